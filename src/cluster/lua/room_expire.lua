-- Ends detachments whose grace ran out: ARGV: now_ms. Returns a list of room states, each with
-- change {kind: "left", reason: "timeout"}.
local now = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', 'sp:detached', '-inf', now, 'LIMIT', 0, 100)
local out = {}
for _, target in ipairs(due) do
  redis.call('ZREM', 'sp:detached', target)
  local sep = string.find(target, '\n', 1, true)
  local key, peer = string.sub(target, 1, sep - 1), string.sub(target, sep + 1)
  local opts, members = load(key)
  local _, m = find(members, 'peer', peer)
  if m and m.detached ~= NULL then
    remove(key, m)
    local v = bump(key, opts)
    out[#out + 1] = cjson.encode(answer(key, v, opts, {kind = 'left', peer = peer, reason = 'timeout',
      member = m}))
  end
end
return out
