-- A room as it is now: ARGV: key. Returns the room state with change {kind: "sync"}.
local key = ARGV[1]
local opts, _ = load(key)
local v = tonumber(redis.call('GET', rkey(key) .. ':v') or '0')
return cjson.encode(answer(key, v, opts, {kind = 'sync'}))
