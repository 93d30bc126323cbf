-- Keeps a frame for a detached member: ARGV: key, peer, frame, max_messages, max_bytes.
-- Returns "" when kept (or the member is gone), {"deliver": session, "node": n} when the member
-- resumed meanwhile (the frame goes to its new session, after those kept), or the room state
-- with the member gone ({kind: "left", reason: "timeout"}) when it would have kept too much.
local key, peer, frame = ARGV[1], ARGV[2], ARGV[3]
local max_messages, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local opts, members = load(key)
local _, m = find(members, 'peer', peer)
if not m then return '' end
if m.detached == NULL then
  return cjson.encode({deliver = m.session, node = m.node})
end
local kept = redis.call('LLEN', kept_key(key, peer))
if kept + 1 > max_messages or m.kept_bytes + #frame > max_bytes then
  remove(key, m)
  local v = bump(key, opts)
  return cjson.encode(answer(key, v, opts, {kind = 'left', peer = peer, reason = 'timeout', member = m}))
end
redis.call('RPUSH', kept_key(key, peer), frame)
m.kept_bytes = m.kept_bytes + #frame
save(key, m)
return ''
