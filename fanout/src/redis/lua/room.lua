-- Every write to a room, atomically: all keys share the room's hash tag, so on Redis
-- Cluster the script runs on the room's shard. The only place that sequences events.
--
-- KEYS[1] meta hash {epoch, seq, likes, polls}   KEYS[2] stream
-- KEYS[3] idempotency key (always in the room's slot; used only when ARGV[11] is "1")
-- KEYS[4] key prefix of the room's polls ("<prefix>:poll:")
-- ARGV[1] op: event | likes | poll_open | poll_close | vote | poll_flush
-- ARGV[2] room   ARGV[3] now (ms)   ARGV[4] epoch to create if the room has none
-- ARGV[5] stream max length   ARGV[6] channel   ARGV[7] "1" for SPUBLISH (Cluster)
-- ARGV[8..] per op (below).
-- Sequencing ops return {epoch, seq, duplicate}; errors are returned as {err = "..."}.
local meta, stream, idem, polls = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, room, now = ARGV[1], ARGV[2], ARGV[3]

local function room_epoch()
  local epoch = redis.call("HGET", meta, "epoch")
  if not epoch then
    -- A new (or lost) room: history of an older epoch must not mix with this one.
    epoch = ARGV[4]
    redis.call("DEL", stream)
    redis.call("HSET", meta, "epoch", epoch, "seq", 0, "likes", 0, "polls", 0)
  end
  return epoch
end

local function sequence(kind, data)
  local epoch = room_epoch()
  local seq = redis.call("HINCRBY", meta, "seq", 1)
  local frame = '{"type":"event","room":"' .. room .. '","epoch":"' .. epoch .. '","seq":' .. seq ..
    ',"kind":"' .. kind .. '","ts":' .. now .. ',"data":' .. data .. '}'
  redis.call("XADD", stream, "MAXLEN", "~", ARGV[5], seq .. "-0", "f", frame)
  local message = seq .. ":" .. epoch .. ":" .. frame
  if ARGV[7] == "1" then
    redis.call("SPUBLISH", ARGV[6], message)
  else
    redis.call("PUBLISH", ARGV[6], message)
  end
  return {epoch, seq, 0}
end

local function load_poll(id)
  local doc = redis.call("GET", polls .. id)
  if not doc then return nil end
  return cjson.decode(doc)
end

local function save_poll(p)
  redis.call("SET", polls .. p.poll, cjson.encode(p))
end

if op == "event" then
  -- ARGV[8] kind   ARGV[9] data JSON   ARGV[10] idempotency TTL (s)   ARGV[11] "1" with a key
  local keyed = ARGV[11] == "1"
  if keyed then
    local prev = redis.call("GET", idem)
    local e = redis.call("HGET", meta, "epoch")
    if prev and e then return {e, tonumber(prev), 1} end
  end
  local r = sequence(ARGV[8], ARGV[9])
  if keyed then redis.call("SET", idem, r[2], "EX", ARGV[10]) end
  return r
elseif op == "likes" then
  -- ARGV[8] delta
  room_epoch()
  local total = redis.call("HINCRBY", meta, "likes", ARGV[8])
  return sequence("likes", '{"total":' .. total .. ',"delta":' .. ARGV[8] .. '}')
elseif op == "poll_open" then
  -- ARGV[8] poll document without id (JSON: question, options[{text,votes}], ends_at)
  room_epoch()
  local p = cjson.decode(ARGV[8])
  p.poll = "p-" .. redis.call("HINCRBY", meta, "polls", 1)
  p.state = "open"
  save_poll(p)
  redis.call("SADD", polls .. "open", p.poll)
  local r = sequence("poll", cjson.encode(p))
  table.insert(r, p.poll)
  return r
elseif op == "poll_close" then
  -- ARGV[8] poll id
  local p = load_poll(ARGV[8])
  if not p then return {err = "unknown_poll"} end
  if p.state ~= "open" then return {err = "poll_closed"} end
  p.state = "closed"
  save_poll(p)
  redis.call("SREM", polls .. "open", p.poll)
  redis.call("SREM", polls .. "dirty", p.poll)
  return sequence("poll", cjson.encode(p))
elseif op == "vote" then
  -- ARGV[8] poll id   ARGV[9] user   ARGV[10] option (0-based)
  local p = load_poll(ARGV[8])
  if not p then return {err = "unknown_poll"} end
  if p.state ~= "open" or tonumber(p.ends_at) <= tonumber(now) then return {err = "poll_closed"} end
  local option = tonumber(ARGV[10]) + 1
  if option > #p.options then return {err = "bad_option"} end
  if redis.call("SADD", polls .. "voters:" .. p.poll, ARGV[9]) == 0 then return {err = "already_voted"} end
  p.options[option].votes = p.options[option].votes + 1
  save_poll(p)
  redis.call("SADD", polls .. "dirty", p.poll)
  return {"", 0, 0}
elseif op == "poll_flush" then
  -- Publishes changed tallies (coalesced) and closes polls past their end.
  local published = 0
  for _, id in ipairs(redis.call("SMEMBERS", polls .. "open")) do
    local p = load_poll(id)
    local dirty = redis.call("SREM", polls .. "dirty", id) == 1
    if p and tonumber(p.ends_at) <= tonumber(now) then
      p.state = "closed"
      save_poll(p)
      redis.call("SREM", polls .. "open", id)
      dirty = true
    end
    if p and dirty then
      sequence("poll", cjson.encode(p))
      published = published + 1
    end
  end
  return {"", published, 0}
elseif op == "online" then
  -- ARGV[8] gateway id   ARGV[9] its local count   ARGV[10] TTL (ms)
  -- Each gateway's count carries its own expiry; the total skips (and drops) stale ones.
  local key = string.sub(meta, 1, -2) .. "on"
  local t = tonumber(now)
  redis.call("HSET", key, ARGV[8], ARGV[9] .. ":" .. (t + tonumber(ARGV[10])))
  redis.call("PEXPIRE", key, ARGV[10])
  local total, all = 0, redis.call("HGETALL", key)
  for i = 1, #all, 2 do
    local count, expires = string.match(all[i + 1], "(%d+):(%d+)")
    if count and tonumber(expires) > t then
      total = total + tonumber(count)
    else
      redis.call("HDEL", key, all[i])
    end
  end
  return {"", total, 0}
elseif op == "polls" then
  local out = {}
  for _, id in ipairs(redis.call("SMEMBERS", polls .. "open")) do
    local doc = redis.call("GET", polls .. id)
    if doc then table.insert(out, doc) end
  end
  return out
end
return {err = "unknown op " .. op}
