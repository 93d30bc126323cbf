-- Accepts a live code for a device (after guard_prelude.lua): the first accept creates the room,
-- later devices join it while it has room, a repeat by a member answers the same room. No live
-- code is a failed guess.
-- A: joinid, device, new_roomid
-- Returns {"notfound", lockout_ms} | {"conflict"} |
--   {"room", roomid, created_at_ms_if_this_created_it_or_""}.
local joinid, device, new_room = A[1], A[2], A[3]
local key = 'sp:code:' .. joinid
local c = redis.call('HMGET', key, 'client1', 'exp', 'created_at', 'capacity', 'client2', 'roomid')
local client1, exp, created_at, capacity, client2, roomid = c[1], c[2], c[3], c[4], c[5], c[6]
if not client1 or not exp or tonumber(exp) <= now then
  return {'notfound', guessed_wrong()}
end
if client1 == device then
  return {'conflict'}
end
if not roomid then
  local room = 'sp:room:' .. new_room
  redis.call('HSET', room, 'client1', client1, 'client2', device, 'capacity', capacity,
    'created_at', now)
  redis.call('RPUSH', room .. ':members', client1, device)
  redis.call('SADD', room .. ':codes', joinid)
  redis.call('HSET', key, 'client2', device, 'roomid', new_room)
  redis.call('ZREM', 'sp:unaccepted', joinid)
  redis.call('SADD', 'sp:device:' .. client1 .. ':rooms', new_room)
  redis.call('SADD', 'sp:device:' .. device .. ':rooms', new_room)
  redis.call('SADD', 'sp:device:' .. device .. ':codes', joinid)
  return {'room', new_room, created_at}
end
local room = 'sp:room:' .. roomid
if redis.call('EXISTS', room) == 0 then
  return {'notfound', guessed_wrong()}
end
local members = redis.call('LRANGE', room .. ':members', 0, -1)
for _, member in ipairs(members) do
  if member == device then
    return {'room', roomid, ''}
  end
end
if #members < tonumber(redis.call('HGET', room, 'capacity') or '2') then
  redis.call('RPUSH', room .. ':members', device)
  redis.call('SADD', 'sp:device:' .. device .. ':rooms', roomid)
  redis.call('SADD', 'sp:device:' .. device .. ':codes', joinid)
  return {'room', roomid, ''}
end
return {'conflict'}
