-- Ends a room for all its members: ARGV: key. Returns the room state (members as they were)
-- with change {kind: "closed", epoch}, and marks the close for joins checked before it.
local key = ARGV[1]
local opts, members = load(key)
local epoch = redis.call('INCR', 'sp:epoch')
redis.call('SET', 'sp:closed:' .. key, epoch, 'PX', 60000)
local before = members
if #before == 0 then before = NULL end
for _, m in ipairs(members) do remove(key, m) end
local v = bump(key, opts)
return cjson.encode({key = key, v = v, opts = opts or NULL, members = before,
  change = {kind = 'closed', epoch = epoch}})
