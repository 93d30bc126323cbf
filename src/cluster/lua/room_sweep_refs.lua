-- Removes the given members (refs "key\npeer"), for a purged device or a dead node:
-- ARGV: reason, refs... Returns a list of room states, each with change {kind: "left"}.
local reason = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local target = ARGV[i]
  local sep = string.find(target, '\n', 1, true)
  local key, peer = string.sub(target, 1, sep - 1), string.sub(target, sep + 1)
  local opts, members = load(key)
  local _, m = find(members, 'peer', peer)
  if m then
    remove(key, m)
    local v = bump(key, opts)
    out[#out + 1] = cjson.encode(answer(key, v, opts, {kind = 'left', peer = peer, reason = reason,
      member = m}))
  end
end
return out
