-- A new session takes a detached member's place: ARGV: token, session, node, fresh token.
-- Returns "" for an unknown, spent or expired token, else the room state with change
-- {kind: "reconnected", peer, session, kept: [frames...], token}.
local token, session, node, fresh = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local target = redis.call('GET', 'sp:tok:' .. token)
if not target then return '' end
local sep = string.find(target, '\n', 1, true)
local key, peer = string.sub(target, 1, sep - 1), string.sub(target, sep + 1)
local opts, members = load(key)
local _, m = find(members, 'peer', peer)
if not m or m.detached == NULL or m.resume ~= token then return '' end
local kept = redis.call('LRANGE', kept_key(key, peer), 0, -1)
redis.call('DEL', kept_key(key, peer), 'sp:tok:' .. token)
redis.call('ZREM', 'sp:detached', ref(key, peer))
m.session, m.node, m.detached, m.kept_bytes, m.resume = session, node, NULL, 0, fresh
save(key, m)
redis.call('SADD', 'sp:node:' .. node .. ':m', ref(key, peer))
local v = bump(key, opts)
if #kept == 0 then kept = NULL end
return cjson.encode(answer(key, v, opts, {kind = 'reconnected', peer = peer, session = session,
  kept = kept, token = fresh}))
