-- A pairing request counted against its client's limits in the same atomic step as the store
-- work it guards (after limits_prelude.lua, before the operation's own lines), so a request
-- costs one round trip and a burst of guesses cannot overshoot the limit.
-- ARGV[1] now_ms; ARGV[2] the REST rate bucket ('' counts nothing), ARGV[3] its capacity,
-- ARGV[4] its tokens per ms; ARGV[5] the guess record ('' when the request is no guess),
-- ARGV[6..11] the guess policy (see guess_policy); ARGV[12..] the operation's own arguments,
-- which it reads as A[1..].
-- Refusals answer {'rate', ms} (over the rate) or {'locked', ms} (locked out for guessing)
-- before the operation runs.
local now = tonumber(ARGV[1])
local GUARD_ARGS = 11
local A = {}
for i = GUARD_ARGS + 1, #ARGV do
  A[i - GUARD_ARGS] = ARGV[i]
end
if ARGV[2] ~= '' then
  local wait = rate_take(ARGV[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]))
  if wait > 0 then
    return {'rate', wait}
  end
end
local guess_key, guess_p, guess_g = ARGV[5], nil, nil
if guess_key ~= '' then
  guess_p = guess_policy(ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  guess_g = guess_load(guess_key, now, guess_p)
  local wait = guess_refusal(guess_g, now, guess_p)
  if wait > 0 then
    return {'locked', math.floor(wait)}
  end
end

-- The operation calls this when its answer is a failed guess: the failure is counted, and the
-- lock-out it started (ms, or 0) goes into the answer.
local function guessed_wrong()
  if not guess_g then
    return 0
  end
  local block = guess_fail(guess_g, now, guess_p)
  guess_save(guess_key, guess_g, now, guess_p)
  return block
end
