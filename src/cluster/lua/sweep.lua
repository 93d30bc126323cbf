-- Forgets expired codes in the indexes (the codes themselves expire natively).
-- ARGV: now_ms. Returns {removed, unaccepted}.
local now = ARGV[1]
local removed = redis.call('ZREMRANGEBYSCORE', 'sp:codes', '-inf', now)
local unaccepted = redis.call('ZREMRANGEBYSCORE', 'sp:unaccepted', '-inf', now)
return {removed, unaccepted}
