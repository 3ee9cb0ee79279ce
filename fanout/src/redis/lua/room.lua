-- Every write to a room, atomically: all keys share the room's hash tag, so on Redis
-- Cluster the script runs on the room's shard. The only place that sequences events.
--
-- No JSON is made here: an event is stored and published as a *record* that Rust
-- encodes (fanout/src/redis/record.rs), `<seq>:<epoch>:<ts>:<kind>:<shape>:<body>`:
--   shape d  body = the event's data, JSON made by Rust (dh: high priority, dl: low)
--   shape l  body = <total>:<delta>                     (likes)
--   shape p  body = <id>:<open 1|0>:<ends_at>:<votes,…>:<spec JSON made by Rust> (poll)
--   shape g  body = <count>:<senders, \31-separated>\30<normalized text> (comment.merged)
--
-- One key is passed, KEYS[1]: the room's hash tag `{<prefix>:<room>}`; the script
-- names the room's keys from it (see fanout/src/redis/keys.rs), all in the tag's slot:
--   <tag>:m  meta hash {epoch, seq, likes, polls, ttl_win, doubt, stage}
--   <tag>:s  stream of records, id <seq>-0
--   <tag>:i:<key>  an idempotency key's "<seq>:<fingerprint>"
--   <tag>:p: prefix of the room's poll keys: <p>open, <p>dirty (sets of ids),
--            <p><id> (hash: spec, n, ends, open, v0..), <p>voters:<id> (set)
--   <tag>:on online hash {gateway: "<count>:<expires ms>"}
--   <tag>:b:<second>  viewer comments admitted in that second (Redis TIME)
--   <tag>:g:<h>  copies of the comment text hashed <h> sequenced in its window (the
--            key lives as long as the window)
--   <tag>:gm:<h> the window's merged copies {c count, u senders, t text, due}
--   <tag>:gd zset of the texts with merged copies, by when their window ends
--   <tag>:c  the channel every record is published on
-- ARGV[1] op: event | comment | likes | stage | coupon_open | coupon_close | claim |
--          coupons | coupon_get | poll_open | poll_close | vote | poll_flush |
--          merge_flush | online | roll_over | polls
-- ARGV[2] now (ms)   ARGV[3] epoch to create if the room has none
-- ARGV[4] the refresh window, now / (TTL / 8) in whole numbers, made by Rust
-- ARGV[5..] per op (below).
-- The store's settings are not arguments: Rust writes them into the script's text
-- when it loads it (publisher.rs), since every argument costs a publish about as much
-- as a Redis command does.
--
-- Every key of the room expires after the room TTL, refreshed by every op (publishes,
-- votes, joins, online reports; once per refresh window; a poll's keys also live until
-- the poll ended); an expired room comes back with a new epoch.
-- Sequencing ops return {epoch, seq, duplicate}; errors are {err = "DM_<WHAT>"}.
-- max_len: stream max length; history_age, ttl: ms; spublish: Cluster's SPUBLISH;
-- idem_ttl: s.
local max_len, history_age, ttl, spublish, idem_ttl = SETTINGS
local tag = KEYS[1]
local meta, stream, polls, online = tag .. ":m", tag .. ":s", tag .. ":p:", tag .. ":on"
-- Numbers stay strings unless arithmetic needs them: a publish converts none (a
-- `tonumber` of a timestamp costs about as much as a Redis command here).
local op, now, window = ARGV[1], ARGV[2], ARGV[4]

-- The room's epoch and the refresh window of its last TTL refresh (read once per call).
local known_epoch, refreshed_in

local function read_meta()
  if known_epoch == nil then
    local m = redis.call("HMGET", meta, "epoch", "ttl_win")
    known_epoch, refreshed_in = m[1], m[2]
  end
  return known_epoch
end

local function room_epoch()
  local epoch = read_meta()
  if not epoch then
    -- A new (or lost, or expired) room: nothing of an older epoch may mix with this one.
    epoch = ARGV[3]
    redis.call("DEL", stream, polls .. "open", polls .. "dirty")
    redis.call("HSET", meta, "epoch", epoch, "seq", 0, "likes", 0, "polls", 0)
    known_epoch, refreshed_in = epoch, nil
  end
  return epoch
end

-- The room's own keys live `ttl` past its last activity, refreshed by the first op
-- of each window of ttl/8 (so a room expires between 7/8 of its TTL and its TTL
-- after its last activity, and a busy room's publish costs no PEXPIRE). The poll
-- sets are kept by the poll ops (`expire_poll`).
local function refresh()
  if not read_meta() or refreshed_in == window then return end
  redis.call("PEXPIRE", meta, ttl)
  redis.call("PEXPIRE", stream, ttl)
  redis.call("HSET", meta, "ttl_win", window)
  refreshed_in = window
end

local function record_ts(record)
  return tonumber(string.match(record, "^%d+:[^:]*:(%d+):"))
end

-- Every 16th event drops up to 32 records older than the history age from the head
-- of the stream: each record is dropped once and the cost is spread over the
-- publishes. (Reads skip aged records anyway; this bounds the memory they hold.)
local function trim_by_age(seq)
  if seq % 16 ~= 0 then return end
  local cutoff = tonumber(now) - tonumber(history_age)
  local oldest = redis.call("XRANGE", stream, "-", "+", "COUNT", 1)[1]
  if not oldest or (record_ts(oldest[2][2]) or 0) >= cutoff then return end
  for _, e in ipairs(redis.call("XRANGE", stream, "-", "+", "COUNT", 32)) do
    if (record_ts(e[2][2]) or 0) >= cutoff then return end
    redis.call("XDEL", stream, e[1])
  end
end

-- Sequences one event: `head` is its "<kind>:<shape>", `body` the rest of its record.
local function sequence(head, body)
  local epoch = room_epoch()
  local seq = redis.call("HINCRBY", meta, "seq", 1)
  local s = tostring(seq)
  local record = s .. ":" .. epoch .. ":" .. now .. ":" .. head .. ":" .. body
  redis.call("XADD", stream, "MAXLEN", "~", max_len, s .. "-0", "r", record)
  trim_by_age(seq)
  if spublish then
    redis.call("SPUBLISH", tag .. ":c", record)
  else
    redis.call("PUBLISH", tag .. ":c", record)
  end
  return {epoch, seq, 0}
end

-- A poll's keys, and the room's poll sets, live `ttl` past the poll's end at least.
-- Keeps an interaction's own `keys` the room TTL past its end, and the room's `sets`
-- of such interactions at least as long.
local function expire_interaction(keys, sets, ends)
  local life = tonumber(ttl) + math.max(0, tonumber(ends) - tonumber(now))
  for _, key in ipairs(keys) do
    redis.call("PEXPIRE", key, life)
  end
  for _, set in ipairs(sets) do
    -- NX for a set just made, GT so a later one never shortens an earlier one's life.
    if redis.call("PEXPIRE", set, life, "NX") == 0 then
      redis.call("PEXPIRE", set, life, "GT")
    end
  end
end

local function expire_poll(id, ends)
  expire_interaction({polls .. id, polls .. "voters:" .. id},
    {polls .. "open", polls .. "dirty"}, ends)
end

-- The poll's state as a record body (shape p), or nil when there is no such poll.
local function poll_body(id)
  local key = polls .. id
  local p = redis.call("HMGET", key, "open", "ends", "n", "spec")
  if not p[1] then return nil end
  local votes = {}
  for i = 0, tonumber(p[3]) - 1 do
    votes[#votes + 1] = redis.call("HGET", key, "v" .. i) or "0"
  end
  return id .. ":" .. p[1] .. ":" .. p[2] .. ":" .. table.concat(votes, ",") .. ":" .. p[4]
end

-- Coupons: <tag>:k:<id> hash {title (a JSON string made by Rust), stock, remaining,
-- per_user, ends, open}; <tag>:k:u:<id> claims per user; <tag>:k:c:<id> the claims
-- ("<user>\t<code>\t<ms>"), at most `stock`; <tag>:k:open and <tag>:k:dirty sets.
local coupons = tag .. ":k:"

-- The coupon's state as the JSON `data` of a `coupon` event (as Rust's CouponDoc),
-- or nil when there is no such coupon.
local function coupon_body(id)
  local c = redis.call("HMGET", coupons .. id, "open", "remaining", "title", "stock",
    "per_user", "ends")
  if not c[1] then return nil end
  local state = "open"
  if c[1] ~= "1" then state = "closed" elseif c[2] == "0" then state = "sold_out" end
  return '{"coupon":"' .. id .. '","state":"' .. state .. '","title":' .. c[3] ..
    ',"stock":' .. c[4] .. ',"remaining":' .. c[2] .. ',"per_user":' .. c[5] ..
    ',"ends_at":' .. c[6] .. '}'
end

local function expire_coupon(id, ends)
  expire_interaction({coupons .. id, coupons .. "u:" .. id, coupons .. "c:" .. id},
    {coupons .. "open", coupons .. "dirty"}, ends)
end

local function close_coupon(id)
  redis.call("HSET", coupons .. id, "open", 0)
  redis.call("SREM", coupons .. "open", id)
  redis.call("SREM", coupons .. "dirty", id)
end

local function close_poll(id)
  redis.call("HSET", polls .. id, "open", 0)
  redis.call("SREM", polls .. "open", id)
  redis.call("SREM", polls .. "dirty", id)
end

-- Sequences the merged copies of the text hashed `h` (its window ended) and forgets them.
local function flush_merge(h)
  local gm = tag .. ":gm:" .. h
  local m = redis.call("HMGET", gm, "c", "u", "t")
  redis.call("DEL", gm)
  redis.call("ZREM", tag .. ":gd", h)
  if m[1] and m[3] then
    sequence("comment.merged:g", m[1] .. ":" .. (m[2] or "") .. "\30" .. m[3])
  end
end

-- Flushes up to `limit` windows that ended by now; returns how many.
local function flush_due(limit)
  local due = redis.call("ZRANGEBYSCORE", tag .. ":gd", "-inf", now, "LIMIT", 0, limit)
  for _, h in ipairs(due) do flush_merge(h) end
  return #due
end

local result
-- For op comment: {window key, copies sequenced in it (nil: no window)} of its text.
local comment_window

if op == "comment" then
  -- A viewer's comment: ARGV[5..9] as for op event (ARGV[7..9] empty), then
  -- ARGV[10] the room's budget of viewer comments a second ("0": none)
  -- ARGV[11] the hash of its normalized text ("": it never merges)
  -- ARGV[12] merge_after   ARGV[13] the merge window (ms)
  -- ARGV[14] the sender ("": not named)   ARGV[15] the normalized text
  -- A copy beyond merge_after within its text's window is counted, not sequenced:
  -- {"", <when the window ends>, 2}. A copy after the window first sequences the
  -- merged copies of the window that ended. Merged copies spend no budget; a comment
  -- beyond the budget of this second (Redis TIME, the same clock for every gateway)
  -- is refused with DM_ROOM_BUSY <ms to the next second>.
  local h = ARGV[11]
  if h ~= "" then
    local gk, gm = tag .. ":g:" .. h, tag .. ":gm:" .. h
    local n = redis.call("GET", gk)
    if n and tonumber(n) >= tonumber(ARGV[12]) then
      local due, user = nil, ARGV[14]
      if redis.call("HINCRBY", gm, "c", 1) == 1 then
        due = tonumber(now) + math.max(redis.call("PTTL", gk), 0)
        redis.call("HSET", gm, "t", ARGV[15], "u", user, "due", due)
        redis.call("PEXPIRE", gm, ttl)
        redis.call("ZADD", tag .. ":gd", due, h)
        redis.call("PEXPIRE", tag .. ":gd", ttl)
      else
        local m = redis.call("HMGET", gm, "u", "due")
        local u = m[1] or ""
        due = tonumber(m[2]) or 0
        if user ~= "" then
          local _, seps = string.gsub(u, "\31", "")
          local named = u == "" and 0 or seps + 1
          if named < 5 and not string.find("\31" .. u .. "\31", "\31" .. user .. "\31", 1, true) then
            redis.call("HSET", gm, "u", u == "" and user or u .. "\31" .. user)
          end
        end
      end
      refresh()
      return {"", due, 2}
    end
    if not n and redis.call("EXISTS", gm) == 1 then flush_merge(h) end
    comment_window = {gk, n}
  end
  if ARGV[10] ~= "0" then
    local t = redis.call("TIME")
    local bk = tag .. ":b:" .. t[1]
    local spent = redis.call("INCR", bk)
    if spent == 1 then redis.call("PEXPIRE", bk, 2000) end
    if spent > tonumber(ARGV[10]) then
      return redis.error_reply("DM_ROOM_BUSY " .. (1000 - math.floor(tonumber(t[2]) / 1000)))
    end
  end
  op = "event"
end
if op == "event" then
  -- ARGV[5] "<kind>:<shape>" (shape d, dh or dl by priority)   ARGV[6] data JSON
  -- ARGV[7] idempotency key ("" for none)
  -- ARGV[8] with a key, the event's fingerprint (fanout/src/idempotency.rs). The key
  -- holds "<seq>:<fingerprint>:<epoch>" (older versions wrote "<seq>:<fingerprint>"
  -- and "<seq>": the seq is then of the room's current epoch). A retry is answered
  -- with the epoch and seq the event got, even when the room has a newer epoch since.
  -- ARGV[9] "1" when the publisher marks this as a retry of an attempt whose outcome
  -- it does not know. An unknown key is then refused (DM_KEY_UNKNOWN) if this store may
  -- have lost it within the key's lifetime: Redis started less than idem_ttl ago (a
  -- restart from an older snapshot or without persistence), or a gateway found the
  -- room's writes lost (`doubt`, set by roll_over). The first attempt may then have
  -- been sequenced in a history that is gone, and a second seq is never given to one
  -- key. Only this rare path reads INFO.
  local idem = ARGV[7] ~= "" and tag .. ":i:" .. ARGV[7]
  local prev = idem and redis.call("GET", idem)
  local e = prev and read_meta()
  if e then
    local seq, fp, in_epoch = string.match(prev, "^(%d+):?(%x*):?(.*)$")
    if not seq then return {err = "DM_KEY_UNREADABLE"} end
    if fp ~= "" and fp ~= ARGV[8] then
      return redis.error_reply("DM_KEY_REUSED " .. seq)
    end
    result = {in_epoch ~= "" and in_epoch or e, tonumber(seq), 1}
  elseif idem and ARGV[9] == "1" then
    -- (Inline, not a function: a closure made per call costs every publish.)
    local up = string.match(redis.call("INFO", "server"), "uptime_in_seconds:(%d+)")
    local doubt = redis.call("HGET", meta, "doubt")
    if not up or tonumber(up) < tonumber(idem_ttl)
        or (doubt and tonumber(doubt) > tonumber(now)) then
      return {err = "DM_KEY_UNKNOWN"}
    end
  end
  if not e then
    result = sequence(ARGV[5], ARGV[6])
    if idem then
      redis.call("SET", idem, result[2] .. ":" .. ARGV[8] .. ":" .. result[1], "EX", idem_ttl)
    end
  end
elseif op == "likes" then
  -- ARGV[5] delta
  room_epoch()
  local total = redis.call("HINCRBY", meta, "likes", ARGV[5])
  result = sequence("likes:l", total .. ":" .. ARGV[5])
elseif op == "stage" then
  -- ARGV[5] the stage object's JSON, "" to clear it. Kept in the meta hash (read by
  -- joins), and sequenced as a high `stage` event (`null` when cleared).
  room_epoch()
  if ARGV[5] == "" then
    redis.call("HDEL", meta, "stage")
    result = sequence("stage:dh", "null")
  else
    redis.call("HSET", meta, "stage", ARGV[5])
    result = sequence("stage:dh", ARGV[5])
  end
elseif op == "poll_open" then
  -- ARGV[5] spec JSON   ARGV[6] option count   ARGV[7] ends_at (ms)
  room_epoch()
  local id = "p-" .. redis.call("HINCRBY", meta, "polls", 1)
  -- An id of an expired epoch may still have keys: start clean.
  redis.call("DEL", polls .. id, polls .. "voters:" .. id)
  redis.call("HSET", polls .. id, "spec", ARGV[5], "n", ARGV[6], "ends", ARGV[7], "open", 1)
  redis.call("SADD", polls .. "open", id)
  expire_poll(id, ARGV[7])
  result = sequence("poll:p", poll_body(id))
  table.insert(result, id)
elseif op == "coupon_open" then
  -- ARGV[5] title (a JSON string)   ARGV[6] stock   ARGV[7] per user   ARGV[8] ends_at
  -- ARGV[9] most coupons open in a room
  room_epoch()
  if redis.call("SCARD", coupons .. "open") >= tonumber(ARGV[9]) then
    return {err = "DM_TOO_MANY_COUPONS"}
  end
  local id = "c-" .. redis.call("HINCRBY", meta, "coupons", 1)
  redis.call("DEL", coupons .. id, coupons .. "u:" .. id, coupons .. "c:" .. id)
  redis.call("HSET", coupons .. id, "title", ARGV[5], "stock", ARGV[6], "remaining", ARGV[6],
    "per_user", ARGV[7], "ends", ARGV[8], "open", 1)
  redis.call("SADD", coupons .. "open", id)
  expire_coupon(id, ARGV[8])
  result = sequence("coupon:dh", coupon_body(id))
  table.insert(result, id)
elseif op == "coupon_close" then
  -- ARGV[5] coupon id
  local id = ARGV[5]
  local c = redis.call("HMGET", coupons .. id, "open", "ends")
  if not c[1] then return {err = "DM_UNKNOWN_COUPON"} end
  if c[1] ~= "1" then return {err = "DM_COUPON_CLOSED"} end
  close_coupon(id)
  expire_coupon(id, c[2])
  result = sequence("coupon:dh", coupon_body(id))
elseif op == "claim" then
  -- ARGV[5] coupon id   ARGV[6] user   ARGV[7] the claim's code
  -- Exactly `stock` claims succeed: the checks and the decrement are one script.
  local id = ARGV[5]
  local c = redis.call("HMGET", coupons .. id, "open", "ends", "remaining", "per_user")
  if not c[1] then return {err = "DM_UNKNOWN_COUPON"} end
  if c[1] ~= "1" or tonumber(c[2]) <= tonumber(now) then return {err = "DM_COUPON_CLOSED"} end
  if tonumber(c[3]) <= 0 then return {err = "DM_SOLD_OUT"} end
  local held = tonumber(redis.call("HGET", coupons .. "u:" .. id, ARGV[6]) or "0")
  if held >= tonumber(c[4]) then return {err = "DM_ALREADY_CLAIMED"} end
  redis.call("HSET", coupons .. "u:" .. id, ARGV[6], held + 1)
  local left = redis.call("HINCRBY", coupons .. id, "remaining", -1)
  redis.call("RPUSH", coupons .. "c:" .. id, ARGV[6] .. "\t" .. ARGV[7] .. "\t" .. now)
  expire_coupon(id, c[2])
  if left == 0 then
    -- Sold out: told at once, not coalesced.
    redis.call("SREM", coupons .. "dirty", id)
    result = sequence("coupon:dh", coupon_body(id))
  else
    redis.call("SADD", coupons .. "dirty", id)
    result = {"", 0, 0}
  end
elseif op == "coupons" then
  -- The coupons not closed, as `coupon` event data.
  local out = {}
  for _, id in ipairs(redis.call("SMEMBERS", coupons .. "open")) do
    local body = coupon_body(id)
    if body then table.insert(out, body) end
  end
  return out
elseif op == "coupon_get" then
  -- ARGV[5] coupon id: {state, claims...}
  local body = coupon_body(ARGV[5])
  if not body then return {err = "DM_UNKNOWN_COUPON"} end
  local out = {body}
  for _, c in ipairs(redis.call("LRANGE", coupons .. "c:" .. ARGV[5], 0, -1)) do
    table.insert(out, c)
  end
  return out
elseif op == "poll_close" then
  -- ARGV[5] poll id
  local id = ARGV[5]
  local state = redis.call("HMGET", polls .. id, "open", "ends")
  if not state[1] then return {err = "DM_UNKNOWN_POLL"} end
  if state[1] ~= "1" then return {err = "DM_POLL_CLOSED"} end
  close_poll(id)
  expire_poll(id, state[2])
  result = sequence("poll:p", poll_body(id))
elseif op == "vote" then
  -- ARGV[5] poll id   ARGV[6] user   ARGV[7] option (0-based)
  local id = ARGV[5]
  local p = redis.call("HMGET", polls .. id, "open", "ends", "n")
  if not p[1] then return {err = "DM_UNKNOWN_POLL"} end
  if p[1] ~= "1" or tonumber(p[2]) <= tonumber(now) then return {err = "DM_POLL_CLOSED"} end
  local option = tonumber(ARGV[7])
  if option >= tonumber(p[3]) then return {err = "DM_BAD_OPTION"} end
  if redis.call("SADD", polls .. "voters:" .. id, ARGV[6]) == 0 then
    return {err = "DM_ALREADY_VOTED"}
  end
  redis.call("HINCRBY", polls .. id, "v" .. option, 1)
  redis.call("SADD", polls .. "dirty", id)
  expire_poll(id, p[2])
  result = {"", 0, 0}
elseif op == "poll_flush" then
  -- Publishes changed tallies (coalesced) and closes polls past their end.
  local published = 0
  for _, id in ipairs(redis.call("SMEMBERS", polls .. "open")) do
    local dirty = redis.call("SREM", polls .. "dirty", id) == 1
    local ends = redis.call("HGET", polls .. id, "ends")
    if not ends then
      redis.call("SREM", polls .. "open", id) -- its keys expired
    else
      if tonumber(ends) <= tonumber(now) then
        close_poll(id)
        dirty = true
      end
      if dirty then
        sequence("poll:p", poll_body(id))
        published = published + 1
      end
    end
  end
  -- Coupons likewise: the remaining count coalesced, closed at their end.
  for _, id in ipairs(redis.call("SMEMBERS", coupons .. "open")) do
    local dirty = redis.call("SREM", coupons .. "dirty", id) == 1
    local ends = redis.call("HGET", coupons .. id, "ends")
    if not ends then
      redis.call("SREM", coupons .. "open", id)
    else
      if tonumber(ends) <= tonumber(now) then
        close_coupon(id)
        dirty = true
      end
      if dirty then
        sequence("coupon:dh", coupon_body(id))
        published = published + 1
      end
    end
  end
  result = {"", published, 0}
elseif op == "merge_flush" then
  result = {"", flush_due(64), 0}
elseif op == "online" then
  -- ARGV[5] gateway id   ARGV[6] its local count   ARGV[7] TTL of the count (ms)
  -- Each gateway's count carries its own expiry; the total skips (and drops) stale ones.
  -- Every gateway with viewers of the room reports once per presence interval, so it
  -- also sequences the merged comments of windows that ended, whichever gateway took
  -- them (and whether it is still there).
  flush_due(16)
  local t = tonumber(now)
  redis.call("HSET", online, ARGV[5], ARGV[6] .. ":" .. (t + tonumber(ARGV[7])))
  redis.call("PEXPIRE", online, ARGV[7])
  local total, all = 0, redis.call("HGETALL", online)
  for i = 1, #all, 2 do
    local count, expires = string.match(all[i + 1], "(%d+):(%d+)")
    if count and tonumber(expires) > t then
      total = total + tonumber(count)
    else
      redis.call("HDEL", online, all[i])
    end
  end
  -- Viewers keep their room: a room somebody watches does not expire.
  if total > 0 then refresh() end
  return {"", total, 0}
elseif op == "roll_over" then
  -- ARGV[5] the epoch in which a gateway found the room's seq gone back: Redis lost
  -- acknowledged writes (a restart from an older snapshot, a failover to a lagging
  -- replica), and new events would reuse seqs that viewers already hold. A new epoch
  -- instead, as for a lost room. The evidence is the gateway's (what it delivered
  -- before), which the store cannot see. A second gateway finding the same finds the
  -- epoch already changed.
  if read_meta() == ARGV[5] then
    redis.call("DEL", meta)
    known_epoch = nil
  end
  local epoch = room_epoch()
  -- Idempotency keys written with the lost events are gone too: a retry of one is
  -- refused as unknown for the keys' lifetime (op event).
  redis.call("HSET", meta, "doubt", tonumber(now) + tonumber(idem_ttl) * 1000)
  result = {epoch, tonumber(redis.call("HGET", meta, "seq")), 0}
elseif op == "polls" then
  -- The open polls, as record bodies (shape p).
  local out = {}
  for _, id in ipairs(redis.call("SMEMBERS", polls .. "open")) do
    local body = poll_body(id)
    if body then table.insert(out, body) end
  end
  return out
else
  return {err = "DM_UNKNOWN_OP " .. op}
end
if comment_window then
  -- The copy was sequenced: counted in its text's window (opened by the first copy).
  if comment_window[2] then
    redis.call("INCR", comment_window[1])
  else
    redis.call("SET", comment_window[1], 1, "PX", ARGV[13])
  end
end
refresh()
return result
