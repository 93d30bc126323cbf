-- The per-client limits every node shares (see cluster::limits), as functions: the standalone
-- limiter scripts (rate.lua, guess.lua) and the guarded pairing scripts (guard_prelude.lua) are
-- this prelude and a few lines of their own, so both keep one record format and one rule.

-- Takes one token from the bucket at `key` (`capacity` at once, `per_ms` tokens a millisecond).
-- Returns 0 when allowed, else the milliseconds until a token is there.
local function rate_take(key, now, capacity, per_ms)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]) or capacity, tonumber(b[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) / per_ms)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', now)
  -- A bucket that would be full again carries nothing: let it go.
  redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / per_ms) + 1000)
  return wait
end

-- A guess policy from six numeric strings: limit, window_ms, first_block_ms, max_block_ms,
-- offence_memory_ms, in_flight_stale_ms.
local function guess_policy(limit, window, first_block, max_block, memory, stale)
  return {limit = tonumber(limit), window = tonumber(window),
    first_block = tonumber(first_block), max_block = tonumber(max_block),
    memory = tonumber(memory), stale = tonumber(stale)}
end

-- A client's guess record at `key`, its window rolled over if it ended, and reservations of
-- a node that died before settling them forgotten.
local function guess_load(key, now, p)
  local r = redis.call('HMGET', key, 'window_start', 'failures', 'in_flight', 'offences',
    'blocked_until', 'reserved_at')
  local g = {window_start = tonumber(r[1]) or now, failures = tonumber(r[2]) or 0,
    in_flight = tonumber(r[3]) or 0, offences = tonumber(r[4]) or 0,
    blocked_until = tonumber(r[5]) or 0, reserved_at = tonumber(r[6]) or now}
  if now - g.window_start >= p.window then
    g.window_start, g.failures = now, 0
  end
  if now - g.reserved_at >= p.stale then
    g.in_flight = 0
  end
  return g
end

-- 0 when the client may guess now, else the milliseconds to wait: while it is locked out, or
-- while its failures and unsettled reservations reach the limit.
local function guess_refusal(g, now, p)
  if g.blocked_until > now then
    return g.blocked_until - now
  elseif g.failures + g.in_flight >= p.limit then
    return 1000
  end
  return 0
end

-- Counts one failed guess; returns the lock-out it started in milliseconds, or 0.
local function guess_fail(g, now, p)
  g.failures = g.failures + 1
  if g.failures < p.limit then
    return 0
  end
  local block = math.min(p.first_block * 2 ^ math.min(g.offences, 16), p.max_block)
  g.offences, g.failures, g.window_start = g.offences + 1, 0, now
  g.blocked_until = now + block
  return math.floor(block)
end

-- Writes the record back, kept for its window, or past its lock-out for the offence memory.
local function guess_save(key, g, now, p)
  redis.call('HSET', key, 'window_start', g.window_start, 'failures', g.failures,
    'in_flight', g.in_flight, 'offences', g.offences, 'blocked_until', g.blocked_until,
    'reserved_at', g.reserved_at)
  local keep = p.window
  if g.offences > 0 then keep = math.max(g.blocked_until - now, 0) + p.memory end
  redis.call('PEXPIRE', key, math.floor(keep) + 1000)
end
