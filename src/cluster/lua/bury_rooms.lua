-- Deletes paired rooms and the codes that led to them, and leaves a tombstone of each (a
-- deleted room stays dead); with devices given, also every code and room of those devices.
-- ARGV: now_ms, tombstone_ttl_ms, n_rooms, roomids..., devices...
-- Returns {rooms_deleted..., "|", pendings_deleted}.
local now, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rooms, seen = {}, {}
for i = 4, 3 + n do
  if not seen[ARGV[i]] then seen[ARGV[i]] = true; rooms[#rooms + 1] = ARGV[i] end
end
local pendings = 0
local function drop_code(code)
  local key = 'sp:code:' .. code
  local c = redis.call('HMGET', key, 'exp', 'client_key', 'client1', 'client2')
  local existed = redis.call('DEL', key)
  redis.call('ZREM', 'sp:codes', code)
  redis.call('ZREM', 'sp:unaccepted', code)
  if c[2] then redis.call('ZREM', 'sp:client:' .. c[2], code) end
  return existed == 1 and c[1] and tonumber(c[1]) > now
end
for i = 4 + n, #ARGV do
  local device = ARGV[i]
  for _, code in ipairs(redis.call('SMEMBERS', 'sp:device:' .. device .. ':codes')) do
    if drop_code(code) then pendings = pendings + 1 end
  end
  for _, room in ipairs(redis.call('SMEMBERS', 'sp:device:' .. device .. ':rooms')) do
    if not seen[room] then seen[room] = true; rooms[#rooms + 1] = room end
  end
  redis.call('DEL', 'sp:device:' .. device .. ':codes', 'sp:device:' .. device .. ':rooms')
end
local deleted = {}
for _, roomid in ipairs(rooms) do
  local room = 'sp:room:' .. roomid
  if redis.call('EXISTS', room) == 1 then
    for _, code in ipairs(redis.call('SMEMBERS', room .. ':codes')) do drop_code(code) end
    for _, member in ipairs(redis.call('LRANGE', room .. ':members', 0, -1)) do
      redis.call('SREM', 'sp:device:' .. member .. ':rooms', roomid)
    end
    redis.call('DEL', room, room .. ':members', room .. ':codes')
    redis.call('SET', 'sp:tomb:' .. roomid, now, 'PX', ttl)
    deleted[#deleted + 1] = roomid
  end
end
deleted[#deleted + 1] = '|'
deleted[#deleted + 1] = tostring(pendings)
return deleted
