-- client1's poll of its code (after guard_prelude.lua). No live code of that client1 is a
-- failed guess.
-- A: joinid, client1
-- Returns {"notfound", lockout_ms} | {"waiting"} | {"room", roomid}.
local c = redis.call('HMGET', 'sp:code:' .. A[1], 'client1', 'exp', 'roomid')
if c[1] ~= A[2] or not c[2] or tonumber(c[2]) <= now then
  return {'notfound', guessed_wrong()}
end
if c[3] then
  return {'room', c[3]}
end
return {'waiting'}
