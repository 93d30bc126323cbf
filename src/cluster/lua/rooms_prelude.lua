-- Shared by every room script (prepended when the script is built).
--
-- A room `key` is `sp:r:<key>` (a hash: opts, the room's options as JSON; seq, the join
-- counter), `sp:r:<key>:m` (a hash: peer -> member record as JSON), and `sp:r:<key>:v` (the
-- room's version, one more per change, kept a day after the room is gone so versions never
-- repeat). A member record: {peer, info (the MemberInfo, as JSON text), session (decimal
-- string, or null while detached), node (number), device (or null), resume (token or null),
-- detached (detachment number or null), kept_bytes, seq (join order)}.
-- Indexes: sp:node:<n>:m (live members of node n), sp:dev:<device> (members by device),
-- sp:detached (zset of detached members by deadline), sp:tok:<token> (a detached member by its
-- resume token), sp:rooms and sp:rooms:ready (rooms that are not lobbies, and those with two
-- members or more), sp:closed:<key> (the epoch of a recent close).
local NULL = cjson.null

local function rkey(key) return 'sp:r:' .. key end
local function mkey(key) return 'sp:r:' .. key .. ':m' end
local function kept_key(key, peer) return 'sp:r:' .. key .. ':kept:' .. peer end
local function ref(key, peer) return key .. '\n' .. peer end

local function load(key)
  local opts = redis.call('HGET', rkey(key), 'opts')
  local members = {}
  for _, raw in ipairs(redis.call('HVALS', mkey(key))) do
    members[#members + 1] = cjson.decode(raw)
  end
  table.sort(members, function(a, b) return a.seq < b.seq end)
  return opts, members
end

local function find(members, field, value)
  for i, m in ipairs(members) do
    if m[field] ~= NULL and m[field] == value then return i, m end
  end
  return nil, nil
end

local function unindex(key, m)
  if m.session ~= NULL then redis.call('SREM', 'sp:node:' .. m.node .. ':m', ref(key, m.peer)) end
  if m.device ~= NULL then redis.call('SREM', 'sp:dev:' .. m.device, ref(key, m.peer)) end
  if m.detached ~= NULL then
    redis.call('ZREM', 'sp:detached', ref(key, m.peer))
    redis.call('DEL', kept_key(key, m.peer))
    if m.resume ~= NULL then redis.call('DEL', 'sp:tok:' .. m.resume) end
  end
end

local function save(key, m)
  redis.call('HSET', mkey(key), m.peer, cjson.encode(m))
end

local function remove(key, m)
  unindex(key, m)
  redis.call('HDEL', mkey(key), m.peer)
end

-- After a change: the room-level indexes, the version; deletes an empty room.
local function bump(key, opts_json)
  local count = redis.call('HLEN', mkey(key))
  local lobby = opts_json and cjson.decode(opts_json).lobby
  if count == 0 then
    redis.call('DEL', rkey(key), mkey(key))
    redis.call('SREM', 'sp:rooms', key)
    redis.call('SREM', 'sp:rooms:ready', key)
  elseif not lobby then
    redis.call('SADD', 'sp:rooms', key)
    if count >= 2 then
      redis.call('SADD', 'sp:rooms:ready', key)
    else
      redis.call('SREM', 'sp:rooms:ready', key)
    end
  end
  local v = redis.call('INCR', rkey(key) .. ':v')
  redis.call('PEXPIRE', rkey(key) .. ':v', 86400000)
  return v
end

-- The answer every script gives: the room after the change, and what changed.
local function answer(key, v, opts_json, change)
  local _, members = load(key)
  if #members == 0 then members = NULL end
  return {key = key, v = v, opts = opts_json or NULL, members = members, change = change}
end
