-- Creates a pending join code, atomically (after guard_prelude.lua): the creator's client holds
-- at most max_pending live codes (0: no cap), and a code is only handed out if no live code has
-- it; a chosen code that is live is a failed guess.
-- A: exp_ms, client1, client_key, capacity, max_pending, explicit (1|0), candidates...
-- Returns {"ok", code} | {"conflict", lockout_ms} | {"exhausted"} | {"too_many", next_expiry_ms}.
local exp = tonumber(A[1])
local client1, client_key = A[2], A[3]
local capacity, max_pending, explicit = A[4], tonumber(A[5]), A[6] == '1'
local mine = 'sp:client:' .. client_key
redis.call('ZREMRANGEBYSCORE', mine, '-inf', now)
if max_pending > 0 and redis.call('ZCARD', mine) >= max_pending then
  local first = redis.call('ZRANGE', mine, 0, 0, 'WITHSCORES')
  return {'too_many', first[2]}
end
for i = 7, #A do
  local code = A[i]
  local key = 'sp:code:' .. code
  -- An expired code is gone already (native expiry), or about to be: treat it as free.
  local live = redis.call('HGET', key, 'exp')
  if not live or tonumber(live) <= now then
    redis.call('DEL', key)
    redis.call('HSET', key, 'client1', client1, 'client_key', client_key, 'exp', exp,
      'created_at', now, 'capacity', capacity)
    redis.call('PEXPIREAT', key, exp)
    redis.call('ZADD', 'sp:codes', exp, code)
    redis.call('ZADD', 'sp:unaccepted', exp, code)
    redis.call('ZADD', mine, exp, code)
    local keep = redis.call('PTTL', mine)
    if keep < 0 or keep < exp - now then
      redis.call('PEXPIREAT', mine, exp)
    end
    redis.call('SADD', 'sp:device:' .. client1 .. ':codes', code)
    return {'ok', code}
  end
  if explicit then
    return {'conflict', guessed_wrong()}
  end
end
return {'exhausted'}
