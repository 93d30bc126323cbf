-- ARGV: key, session, node, peer, info_json, opts_json, device|"", replace_device 1|0,
--       replace_peer 1|0, rejoin ("announce"|"quiet"), resume token|"", checked_at epoch.
local key, session, node, peer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local info, opts_new, device = ARGV[5], ARGV[6], ARGV[7]
local replace_device, replace_peer = ARGV[8] == '1', ARGV[9] == '1'
local rejoin, token, checked_at = ARGV[10], ARGV[11], tonumber(ARGV[12])
local closed = redis.call('GET', 'sp:closed:' .. key)
if closed and tonumber(closed) > checked_at then
  return cjson.encode({outcome = 'closed'})
end
local opts, members = load(key)
local _, me = find(members, 'session', session)
if me then
  local v = redis.call('GET', rkey(key) .. ':v') or '0'
  if rejoin == 'announce' then v = bump(key, opts) end
  return cjson.encode({outcome = 'already', state = answer(key, tonumber(v), opts,
    {kind = 'rejoined', peer = peer, announce = rejoin == 'announce'})})
end
local victim = nil
for _, m in ipairs(members) do
  if (replace_device and device ~= '' and m.device ~= NULL and m.device == device)
    or (replace_peer and m.peer == peer) or m.peer == peer then
    victim = m
    break
  end
end
opts = opts or opts_new
local capacity = cjson.decode(opts).capacity
local staying = #members - (victim and 1 or 0)
if type(capacity) == 'table' and capacity.Limited and staying >= capacity.Limited then
  return cjson.encode({outcome = 'full', capacity = capacity})
end
local change = {kind = 'joined', peer = peer}
if victim then
  remove(key, victim)
  change.victim = victim
end
redis.call('HSET', rkey(key), 'opts', opts)
local seq = redis.call('HINCRBY', rkey(key), 'seq', 1)
local m = {peer = peer, info = info, session = session, node = node,
  device = device ~= '' and device or NULL, resume = token ~= '' and token or NULL,
  detached = NULL, kept_bytes = 0, seq = seq}
save(key, m)
redis.call('SADD', 'sp:node:' .. node .. ':m', ref(key, peer))
if m.device ~= NULL then redis.call('SADD', 'sp:dev:' .. m.device, ref(key, peer)) end
local v = bump(key, opts)
return cjson.encode({outcome = 'joined', state = answer(key, v, opts, change)})
