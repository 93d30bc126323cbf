-- Takes a member out: ARGV: key, peer, session ("" for any), reason.
-- Returns the room state with change {kind: "left", peer, reason, member}, or "" when it was
-- no member (any more).
local key, peer, session, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local opts, members = load(key)
local _, m = find(members, 'peer', peer)
if not m or (session ~= '' and (m.session == NULL or m.session ~= session)) then
  return ''
end
remove(key, m)
local v = bump(key, opts)
return cjson.encode(answer(key, v, opts, {kind = 'left', peer = peer, reason = reason, member = m}))
