-- Failed guesses of one client and its lock-outs, shared by every node (see limits::guess for
-- the rules). KEYS[1]: the client's record.
-- ARGV: op ("reserve" | "settle"), now_ms, limit, window_ms, first_block_ms, max_block_ms,
--       offence_memory_ms, in_flight_stale_ms, failed ("1" | "0", settle only).
-- reserve returns 0 (reserved) or the milliseconds to wait; settle returns the lock-out it
-- started in milliseconds, or 0.
local op, now = ARGV[1], tonumber(ARGV[2])
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local first_block, max_block = tonumber(ARGV[5]), tonumber(ARGV[6])
local memory, stale = tonumber(ARGV[7]), tonumber(ARGV[8])
local r = redis.call('HMGET', KEYS[1], 'window_start', 'failures', 'in_flight', 'offences',
  'blocked_until', 'reserved_at')
local window_start = tonumber(r[1]) or now
local failures, in_flight = tonumber(r[2]) or 0, tonumber(r[3]) or 0
local offences, blocked_until = tonumber(r[4]) or 0, tonumber(r[5]) or 0
local reserved_at = tonumber(r[6]) or now
if now - window_start >= window then
  window_start, failures = now, 0
end
-- Reservations of a node that died before settling them are forgotten after a while.
if now - reserved_at >= stale then
  in_flight = 0
end
local answer = 0
if op == 'reserve' then
  if blocked_until > now then
    answer = blocked_until - now
  elseif failures + in_flight >= limit then
    answer = 1000
  else
    in_flight, reserved_at = in_flight + 1, now
  end
else
  in_flight = math.max(0, in_flight - 1)
  if ARGV[9] == '1' then
    failures = failures + 1
    if failures >= limit then
      local block = math.min(first_block * 2 ^ math.min(offences, 16), max_block)
      offences, failures, window_start = offences + 1, 0, now
      blocked_until = now + block
      answer = block
    end
  end
end
redis.call('HSET', KEYS[1], 'window_start', window_start, 'failures', failures,
  'in_flight', in_flight, 'offences', offences, 'blocked_until', blocked_until,
  'reserved_at', reserved_at)
local keep = window
if offences > 0 then keep = math.max(blocked_until - now, 0) + memory end
redis.call('PEXPIRE', KEYS[1], math.floor(keep) + 1000)
return math.floor(answer)
