-- Failed guesses of one client and its lock-outs, with reservations (after limits_prelude.lua;
-- see limits::guess for the rules). KEYS[1]: the client's record.
-- ARGV: op ("reserve" | "settle"), now_ms, the six numbers of guess_policy, failed ("1" | "0",
--       settle only).
-- reserve returns 0 (reserved) or the milliseconds to wait; settle returns the lock-out it
-- started in milliseconds, or 0.
local now = tonumber(ARGV[2])
local p = guess_policy(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
local g = guess_load(KEYS[1], now, p)
local answer = 0
if ARGV[1] == 'reserve' then
  answer = guess_refusal(g, now, p)
  if answer == 0 then
    g.in_flight, g.reserved_at = g.in_flight + 1, now
  end
else
  g.in_flight = math.max(0, g.in_flight - 1)
  if ARGV[9] == '1' then
    answer = guess_fail(g, now, p)
  end
end
guess_save(KEYS[1], g, now, p)
return math.floor(answer)
