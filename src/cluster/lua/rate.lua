-- One request against a client's token bucket (after limits_prelude.lua).
-- KEYS[1]: the bucket. ARGV: now_ms, capacity, per_ms.
-- Returns 0 when allowed, else the milliseconds until a token is there.
return rate_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
