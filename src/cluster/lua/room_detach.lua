-- Keeps a dropped member's place: ARGV: key, peer, session, number, deadline_ms.
local key, peer, session, number, deadline = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local opts, members = load(key)
local _, m = find(members, 'peer', peer)
if not m or m.session == NULL or m.session ~= session or m.resume == NULL then
  return ''
end
redis.call('SREM', 'sp:node:' .. m.node .. ':m', ref(key, peer))
m.session = NULL
m.detached = number
m.kept_bytes = 0
save(key, m)
redis.call('ZADD', 'sp:detached', deadline, ref(key, peer))
redis.call('SET', 'sp:tok:' .. m.resume, ref(key, peer), 'PXAT', deadline)
local v = bump(key, opts)
return cjson.encode(answer(key, v, opts, {kind = 'detached', peer = peer}))
