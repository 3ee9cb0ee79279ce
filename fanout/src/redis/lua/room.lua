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
--   <tag>:m  meta hash {epoch, seq, likes, polls, ttl_win, doubt, stage, coupons, kw,
--            xk/xq/xl (interaction id counters), seats, seats_v, seats_doc}
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
--   <tag>:x: prefix of the keyword games', quizzes' and lotteries' keys (below)
--   <tag>:c  the channel every record is published on
--   <tag>:an, <tag>:av  retention counters and visits (op analytics)
-- ARGV[1] op: event | comment | likes | stage | coupon_open | coupon_close | claim |
--          coupons | coupon_get | moderate | arrive | set_welcome | entrance_flush |
--          moderation_log | analytics | analytics_get |
--          settings_get | settings_put | seats_get | seats_put | x_open | x_close | x_drawn | answer | enter | x_get |
--          interactions | poll_open | poll_close | vote | poll_flush | merge_flush |
--          online | roll_over | polls
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
-- max_entrants: most users one keyword game, quiz or lottery keeps; max_open: most of
-- them open in a room.
local max_len, history_age, ttl, spublish, idem_ttl, max_entrants, max_open = SETTINGS
local tag = KEYS[1]
local meta, stream, polls, online = tag .. ":m", tag .. ":s", tag .. ":p:", tag .. ":on"
-- Numbers stay strings unless arithmetic needs them: a publish converts none (a
-- `tonumber` of a timestamp costs about as much as a Redis command here).
local op, now, window = ARGV[1], ARGV[2], ARGV[4]

-- The room's epoch and the refresh window of its last TTL refresh (read once per call).
local known_epoch, refreshed_in

-- (and `matchers`: how many open interactions count comments, "0" or nil for none;
-- `rules` and `blocked`: the room's comment rules and blocked words once its settings
-- were set, see op settings_put; `mods`: set once the room muted or banned anyone)
local matchers, rules, blocked, mods

local function read_meta()
  if known_epoch == nil then
    local m = redis.call("HMGET", meta, "epoch", "ttl_win", "kw", "rules", "bw", "mods")
    known_epoch, refreshed_in, matchers, rules, blocked, mods = m[1], m[2], m[3], m[4], m[5], m[6]
  end
  return known_epoch
end

-- Moderation: <tag>:mu and <tag>:ban hashes (user → until, Unix ms, "0" for good),
-- at most max_moderated entries each; <tag>:ml the audit list (JSON made by Rust, the
-- last 1,000); <tag>:rt the retracted seqs (a sorted set, the last 1,000).
local mutes, bans = tag .. ":mu", tag .. ":ban"

-- How long `user` stays in `list` ("0" for good), or nil when it is not (an entry
-- that ended is dropped).
local function listed(list, user)
  read_meta()
  if not mods then return nil end
  local u = redis.call("HGET", list, user)
  if not u then return nil end
  if u == "0" then return "0" end
  local left = tonumber(u) - tonumber(now)
  if left > 0 then return tostring(left) end
  redis.call("HDEL", list, user)
  return nil
end

local function room_epoch()
  local epoch = read_meta()
  if not epoch then
    -- A new (or lost, or expired) room: nothing of an older epoch may mix with this one.
    epoch = ARGV[3]
    redis.call("DEL", stream, polls .. "open", polls .. "dirty", tag .. ":x:open",
      tag .. ":x:dirty", tag .. ":x:kw", tag .. ":x:drawing")
    redis.call("HSET", meta, "epoch", epoch, "seq", 0, "likes", 0, "polls", 0)
    known_epoch, refreshed_in, matchers, rules, blocked = epoch, nil, nil, nil, nil
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
-- per_user, ends, open, aud (its audience's tag, "" for everyone)}; <tag>:k:u:<id> claims per user; <tag>:k:c:<id> the claims
-- ("<user>\t<code>\t<ms>"), at most `stock`; <tag>:k:open and <tag>:k:dirty sets.
local coupons = tag .. ":k:"

-- The coupon's state as the JSON `data` of a `coupon` event (as Rust's CouponDoc),
-- behind its audience's tag when it has one; nil when there is no such coupon.
local function coupon_body(id)
  local c = redis.call("HMGET", coupons .. id, "open", "remaining", "title", "stock",
    "per_user", "ends", "aud")
  if not c[1] then return nil end
  local state = "open"
  if c[1] ~= "1" then state = "closed" elseif c[2] == "0" then state = "sold_out" end
  return (c[7] or "") .. '{"coupon":"' .. id .. '","state":"' .. state .. '","title":' .. c[3] ..
    ',"stock":' .. c[4] .. ',"remaining":' .. c[2] .. ',"per_user":' .. c[5] ..
    ',"ends_at":' .. c[6] .. '}'
end

-- Whether the viewer `user` with `have` ("\31"-wrapped tags) is in the audience whose
-- tag is `aud` ("\1" kind "\31" item "\31" … "\2", as Rust's audience module makes it).
local function in_audience(aud, user, have)
  local kind, items = string.sub(aud, 2, 2), string.sub(aud, 3, -2)
  if kind == "u" then return string.find(items, "\31" .. user .. "\31", 1, true) ~= nil end
  for t in string.gmatch(items, "[^\31]+") do
    local has = string.find(have, "\31" .. t .. "\31", 1, true) ~= nil
    if kind == "t" and has then return true end
    if kind == "a" and not has then return false end
  end
  return kind == "a"
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

-- Keyword games (k-), quizzes (q-) and lotteries (l-): <tag>:x:<id> hash {kind k|q|l,
-- spec (JSON made by Rust), ends, open 1|0, m (the normalized text a counting comment
-- contains), goal, c (comments), n (options), ans, v0.. (answers per option), seed
-- (hex), wn (winners), quiz (a quiz lottery's quiz), cmd (1: entered by command), tags
-- ("\31"-separated, "" for all), draw (the drawn event's counts, made by Rust)};
-- <tag>:x:u:<id> its users (participants, answerers, entrants; at most max_entrants);
-- <tag>:x:r:<id> a quiz's correct answerers in order; sets <tag>:x:open, <tag>:x:dirty,
-- <tag>:x:kw (those counting comments; their number is the meta field kw, read with
-- the epoch) and <tag>:x:drawing (lotteries closed and not drawn yet).
-- An event's data is {"id":…,"state":…,<spec>,"ends_at":…,<counts>}, as Rust's
-- fanout/src/interaction.rs makes it.
local xs = tag .. ":x:"

local function x_expire(id, ends)
  expire_interaction({xs .. id, xs .. "u:" .. id, xs .. "r:" .. id},
    {xs .. "open", xs .. "dirty", xs .. "kw", xs .. "drawing"}, ends)
end

local function x_body(id)
  local key = xs .. id
  local x = redis.call("HMGET", key, "kind", "open", "spec", "ends", "c", "goal", "n", "ans",
    "draw")
  if not x[1] then return nil end
  local users = redis.call("SCARD", xs .. "u:" .. id)
  local state, counts = "open", nil
  if x[1] == "k" then
    counts = '"comments":' .. x[5] .. ',"participants":' .. users
    if x[6] ~= "" and tonumber(x[5]) >= tonumber(x[6]) then counts = counts .. ',"reached":true' end
    if x[2] ~= "1" then state = "closed" end
  elseif x[1] == "q" then
    local votes, sum = {}, 0
    for i = 0, tonumber(x[7]) - 1 do
      local v = tonumber(redis.call("HGET", key, "v" .. i) or "0")
      votes[#votes + 1] = v
      sum = sum + v
    end
    counts = '"answers":' .. sum
    if x[2] ~= "1" then
      state = "closed"
      counts = counts .. ',"answer":' .. x[8] .. ',"counts":[' .. table.concat(votes, ",") ..
        '],"correct":' .. redis.call("LLEN", xs .. "r:" .. id)
    end
  else
    if x[9] then
      state, counts = "drawn", x[9]
    else
      counts = '"entrants":' .. users
    end
  end
  return '{"id":"' .. id .. '","state":"' .. state .. '",' .. x[3] .. ',"ends_at":' .. x[4] ..
    ',' .. counts .. '}'
end

local function x_kind_name(kind)
  if kind == "k" then return "keyword" elseif kind == "q" then return "quiz" end
  return "lottery"
end

local function x_count_matchers()
  redis.call("HSET", meta, "kw", redis.call("SCARD", xs .. "kw"))
end

-- Closes an open one. A keyword or quiz is announced now; a lottery waits for its draw
-- (x_close answers its entrants, x_drawn publishes it).
local function x_shut(id, kind)
  redis.call("HSET", xs .. id, "open", 0)
  redis.call("SREM", xs .. "open", id)
  redis.call("SREM", xs .. "dirty", id)
  if redis.call("SREM", xs .. "kw", id) == 1 then x_count_matchers() end
  if kind == "l" then
    -- A quiz lottery's entrants are its quiz's correct answerers.
    local quiz = redis.call("HGET", xs .. id, "quiz")
    if quiz and quiz ~= "" then
      local users = xs .. "u:" .. id
      redis.call("DEL", users)
      local correct = redis.call("LRANGE", xs .. "r:" .. quiz, 0, max_entrants - 1)
      for i = 1, #correct, 5000 do
        redis.call("SADD", users, unpack(correct, i, math.min(i + 4999, #correct)))
      end
    end
    redis.call("SADD", xs .. "drawing", id)
    return nil
  end
  return sequence(x_kind_name(kind) .. ":dh", x_body(id))
end

-- Whether a viewer with `have` ("\31"-wrapped tags) may enter with `want` ("\31"-separated).
local function x_eligible(want, have)
  if want == "" then return true end
  for t in string.gmatch(want, "[^\31]+") do
    if string.find(have, "\31" .. t .. "\31", 1, true) then return true end
  end
  return false
end

-- A viewer comment was admitted: counted in the keyword games whose text it contains,
-- and its sender entered into such comment lotteries. Returns whether anything changed.
-- ARGV[15] the normalized text   ARGV[16] the sender   ARGV[17] its tags, "\31"-wrapped
local function x_comment()
  read_meta()
  if not matchers or matchers == "0" or ARGV[15] == "" then return false end
  local changed = false
  for _, id in ipairs(redis.call("SMEMBERS", xs .. "kw")) do
    local x = redis.call("HMGET", xs .. id, "kind", "open", "ends", "m", "tags")
    if x[2] == "1" and tonumber(x[3]) > tonumber(now)
        and string.find(ARGV[15], x[4], 1, true) then
      local users = xs .. "u:" .. id
      local room_for = redis.call("SCARD", users) < max_entrants
      if x[1] == "k" then
        redis.call("HINCRBY", xs .. id, "c", 1)
        if room_for then redis.call("SADD", users, ARGV[16]) end
        redis.call("SADD", xs .. "dirty", id)
        changed = true
      elseif room_for and x_eligible(x[5], ARGV[17])
          and redis.call("SADD", users, ARGV[16]) == 1 then
        redis.call("SADD", xs .. "dirty", id)
        changed = true
      end
    end
  end
  return changed
end

-- A versioned document of the room (meta field `name`, its version `<name>_v`): its
-- {version, JSON ("" when never written)}.
local function doc_read(name)
  local m = redis.call("HMGET", meta, name .. "_v", name)
  return {m[1] or "0", m[2] or ""}
end

-- Writes document `name` if it is still at `version` (nobody wrote since that read);
-- returns whether it did.
local function doc_write(name, version, json)
  room_epoch()
  local v = redis.call("HGET", meta, name .. "_v") or "0"
  if v ~= version then return false end
  redis.call("HSET", meta, name, json, name .. "_v", tonumber(v) + 1)
  return true
end

-- The states (`body` of each id) of the interactions in `set` that still exist.
local function bodies(set, body)
  local out = {}
  for _, id in ipairs(redis.call("SMEMBERS", set)) do
    local b = body(id)
    if b then table.insert(out, b) end
  end
  return out
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
-- For op comment: whether it counted in a keyword game or entered a lottery.
local comment_counted
-- For op comment: {window key, copies sequenced in it (nil: no window)} of its text.
local comment_window

if op == "comment" then
  -- A viewer's comment: ARGV[5..9] as for op event (ARGV[7..9] empty), then
  -- ARGV[10] the room's budget of viewer comments a second ("0": none)
  -- ARGV[11] the hash of its normalized text ("": it never merges)
  -- ARGV[12] merge_after   ARGV[13] the merge window (ms)
  -- ARGV[14] the sender ("": not named)   ARGV[15] the normalized text
  -- ARGV[16] the sender   ARGV[17] its tags   ARGV[18] its level
  -- ARGV[19] slow mode (ms, "0": off)   ARGV[20] the minimum level
  -- ARGV[21] blocked words, "\31"-wrapped ("" for none)
  -- ARGV[10], [12], [13] and [19..21] are the gateway's defaults: a room whose settings
  -- were set has its own (meta rules and bw), which replace them all.
  -- The rules refuse first, spending nothing: a level below the minimum (DM_LEVEL
  -- <min>), a blocked word in the normalized text (DM_BLOCKED), a comment within the
  -- sender's slow mode (DM_SLOW_MODE <ms left>). An admitted comment (merged or
  -- sequenced) starts the sender's slow mode. Before them all, a muted sender is
  -- refused with DM_MUTED <ms left, 0 for good>.
  local muted = listed(mutes, ARGV[16])
  if muted then return redis.error_reply("DM_MUTED " .. muted) end
  read_meta()
  local slow, min_level, words = ARGV[19], ARGV[20], ARGV[21]
  if rules then
    local s, l, cps, ma, mw = string.match(rules, "^(%d+) (%d+) (%d+) (%d+) (%d+)")
    if not s then return {err = "DM_BAD_RULES"} end
    slow, min_level, words = s, l, blocked or ""
    ARGV[10], ARGV[12], ARGV[13] = cps, ma, mw
  end
  if min_level ~= "0" and tonumber(ARGV[18]) < tonumber(min_level) then
    return redis.error_reply("DM_LEVEL " .. min_level)
  end
  if words ~= "" and ARGV[15] ~= "" then
    for w in string.gmatch(words, "[^\31]+") do
      if string.find(ARGV[15], w, 1, true) then return {err = "DM_BLOCKED"} end
    end
  end
  local slow_key
  if slow ~= "0" then
    slow_key = tag .. ":sl:" .. ARGV[16]
    local left = redis.call("PTTL", slow_key)
    if left > 0 then return redis.error_reply("DM_SLOW_MODE " .. left) end
  end
  -- A copy beyond merge_after within its text's window is counted, not sequenced:
  -- {"", <when the window ends>, 2}. A copy after the window first sequences the
  -- merged copies of the window that ended. Merged copies spend no budget; a comment
  -- beyond the budget of this second (Redis TIME, the same clock for every gateway)
  -- is refused with DM_ROOM_BUSY <ms to the next second>.
  local h = ARGV[11]
  if h ~= "" and ARGV[12] ~= "0" then
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
      local counted = x_comment() and 1 or 0
      refresh()
      if slow_key then redis.call("SET", slow_key, "1", "PX", slow) end
      return {"", due, 2, counted}
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
      return redis.error_reply("DM_ROOM_BUSY " .. (1000 - math.floor(tonumber(t[2]) / 1000))
        .. " " .. ARGV[10])
    end
  end
  if slow_key then redis.call("SET", slow_key, "1", "PX", slow) end
  comment_counted = x_comment()
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
  -- ARGV[9] most coupons open in a room   ARGV[10] its audience's tag ("" for everyone)
  room_epoch()
  if redis.call("SCARD", coupons .. "open") >= tonumber(ARGV[9]) then
    return {err = "DM_TOO_MANY_COUPONS"}
  end
  local id = "c-" .. redis.call("HINCRBY", meta, "coupons", 1)
  redis.call("DEL", coupons .. id, coupons .. "u:" .. id, coupons .. "c:" .. id)
  redis.call("HSET", coupons .. id, "title", ARGV[5], "stock", ARGV[6], "remaining", ARGV[6],
    "per_user", ARGV[7], "ends", ARGV[8], "open", 1, "aud", ARGV[10])
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
  -- ARGV[8] the user's tags, "\31"-wrapped
  -- Exactly `stock` claims succeed: the checks and the decrement are one script.
  local id = ARGV[5]
  local c = redis.call("HMGET", coupons .. id, "open", "ends", "remaining", "per_user", "aud")
  if not c[1] then return {err = "DM_UNKNOWN_COUPON"} end
  if c[1] ~= "1" or tonumber(c[2]) <= tonumber(now) then return {err = "DM_COUPON_CLOSED"} end
  if c[5] and c[5] ~= "" and not in_audience(c[5], ARGV[6], ARGV[8]) then
    return {err = "DM_NOT_FOR_YOU"}
  end
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
  return bodies(coupons .. "open", coupon_body)
elseif op == "coupon_get" then
  -- ARGV[5] coupon id: {state, claims...}
  local body = coupon_body(ARGV[5])
  if not body then return {err = "DM_UNKNOWN_COUPON"} end
  local out = {body}
  for _, c in ipairs(redis.call("LRANGE", coupons .. "c:" .. ARGV[5], 0, -1)) do
    table.insert(out, c)
  end
  return out
elseif op == "x_open" then
  -- ARGV[5] kind (k|q|l)   ARGV[6] spec   ARGV[7] ends_at   ARGV[8] matcher ("": none)
  -- ARGV[9] goal ("")   ARGV[10] options   ARGV[11] answer   ARGV[12] seed (hex)
  -- ARGV[13] winners   ARGV[14] a quiz lottery's quiz ("")   ARGV[15] "1": by command
  -- ARGV[16] tags ("\31"-separated, "" for all)
  room_epoch()
  if redis.call("SCARD", xs .. "open") >= max_open then
    return {err = "DM_TOO_MANY_INTERACTIONS"}
  end
  local kind = ARGV[5]
  local id = kind .. "-" .. redis.call("HINCRBY", meta, "x" .. kind, 1)
  redis.call("DEL", xs .. id, xs .. "u:" .. id, xs .. "r:" .. id)
  redis.call("HSET", xs .. id, "kind", kind, "spec", ARGV[6], "ends", ARGV[7], "open", 1,
    "m", ARGV[8], "goal", ARGV[9], "c", 0, "n", ARGV[10], "ans", ARGV[11], "seed", ARGV[12],
    "wn", ARGV[13], "quiz", ARGV[14], "cmd", ARGV[15], "tags", ARGV[16])
  redis.call("SADD", xs .. "open", id)
  if ARGV[8] ~= "" then
    redis.call("SADD", xs .. "kw", id)
    x_count_matchers()
  end
  x_expire(id, ARGV[7])
  result = sequence(x_kind_name(kind) .. ":dh", x_body(id))
  table.insert(result, id)
elseif op == "x_close" then
  -- ARGV[5] id. A keyword or quiz: {epoch, seq, 0} of its final event. A lottery (open,
  -- or closed and not drawn yet): {"", 0, 3, seed, winners, entrants...} for Rust to draw
  -- and publish with x_drawn. A quiz lottery's entrants are its quiz's correct answerers.
  local id = ARGV[5]
  local x = redis.call("HMGET", xs .. id, "kind", "open", "ends", "draw", "seed", "wn")
  if not x[1] then return {err = "DM_UNKNOWN_INTERACTION"} end
  if x[2] == "1" then
    result = x_shut(id, x[1])
  elseif x[1] ~= "l" or x[4] then
    return {err = "DM_CLOSED"}
  end
  x_expire(id, x[3])
  if x[1] == "l" then
    local users = xs .. "u:" .. id
    x_expire(id, x[3])
    refresh()
    local out = {"", 0, 3, x[5], x[6]}
    for _, u in ipairs(redis.call("SMEMBERS", users)) do table.insert(out, u) end
    return out
  end
elseif op == "x_drawn" then
  -- ARGV[5] lottery id   ARGV[6] the drawn event's counts   ARGV[7] the `lottery.won`
  -- body (its winners' audience tag and data; "" without winners). Once: a second
  -- gateway drawing the same lottery (the same draw) gets {epoch, the drawn seq, 1}.
  local id = ARGV[5]
  local x = redis.call("HMGET", xs .. id, "kind", "open", "draw", "dseq")
  if x[1] ~= "l" then return {err = "DM_UNKNOWN_INTERACTION"} end
  if x[2] == "1" then return {err = "DM_OPEN"} end
  if x[3] then
    result = {room_epoch(), tonumber(x[4] or "0"), 1}
  else
    redis.call("HSET", xs .. id, "draw", ARGV[6])
    redis.call("SREM", xs .. "drawing", id)
    result = sequence("lottery:dh", x_body(id))
    redis.call("HSET", xs .. id, "dseq", result[2])
    if ARGV[7] ~= "" then sequence("lottery.won:dh", ARGV[7]) end
  end
elseif op == "answer" then
  -- ARGV[5] quiz id   ARGV[6] user   ARGV[7] option
  local id = ARGV[5]
  local x = redis.call("HMGET", xs .. id, "kind", "open", "ends", "n", "ans")
  if x[1] ~= "q" then return {err = "DM_UNKNOWN_INTERACTION"} end
  if x[2] ~= "1" or tonumber(x[3]) <= tonumber(now) then return {err = "DM_CLOSED"} end
  if tonumber(ARGV[7]) >= tonumber(x[4]) then return {err = "DM_NO_OPTION"} end
  local users = xs .. "u:" .. id
  if redis.call("SISMEMBER", users, ARGV[6]) == 1 then return {err = "DM_ALREADY_ANSWERED"} end
  if redis.call("SCARD", users) >= max_entrants then return {err = "DM_FULL"} end
  redis.call("SADD", users, ARGV[6])
  redis.call("HINCRBY", xs .. id, "v" .. ARGV[7], 1)
  if ARGV[7] == x[5] then redis.call("RPUSH", xs .. "r:" .. id, ARGV[6]) end
  redis.call("SADD", xs .. "dirty", id)
  x_expire(id, x[3])
  result = {"", 0, 0}
elseif op == "enter" then
  -- ARGV[5] lottery id   ARGV[6] user   ARGV[7] its tags, "\31"-wrapped
  local id = ARGV[5]
  local x = redis.call("HMGET", xs .. id, "kind", "open", "ends", "cmd", "tags")
  if x[1] ~= "l" then return {err = "DM_UNKNOWN_INTERACTION"} end
  if x[2] ~= "1" or tonumber(x[3]) <= tonumber(now) then return {err = "DM_CLOSED"} end
  if x[4] ~= "1" then return {err = "DM_NOT_BY_COMMAND"} end
  if not x_eligible(x[5], ARGV[7]) then return {err = "DM_NOT_FOR_YOU"} end
  local users = xs .. "u:" .. id
  if redis.call("SISMEMBER", users, ARGV[6]) == 1 then return {err = "DM_ALREADY_ENTERED"} end
  if redis.call("SCARD", users) >= max_entrants then return {err = "DM_FULL"} end
  redis.call("SADD", users, ARGV[6])
  redis.call("SADD", xs .. "dirty", id)
  x_expire(id, x[3])
  result = {"", 0, 0}
elseif op == "x_get" then
  -- ARGV[5] id: {state, users...}: a quiz's correct answerers in order, a lottery's
  -- entrants (a quiz lottery's once drawn).
  local id = ARGV[5]
  local body = x_body(id)
  if not body then return {err = "DM_UNKNOWN_INTERACTION"} end
  local out = {body}
  local x = redis.call("HMGET", xs .. id, "kind", "quiz", "draw")
  if x[1] == "q" then
    for _, u in ipairs(redis.call("LRANGE", xs .. "r:" .. id, 0, -1)) do table.insert(out, u) end
  elseif x[1] == "l" and (x[2] == "" or x[3]) then
    for _, u in ipairs(redis.call("SMEMBERS", xs .. "u:" .. id)) do table.insert(out, u) end
  end
  return out
elseif op == "interactions" then
  -- The open keyword games, quizzes and lotteries, as event data.
  return bodies(xs .. "open", x_body)
elseif op == "moderate" then
  -- ARGV[5] action (mute | unmute | ban | unban | retract)   ARGV[6] user ("" for
  -- retract)   ARGV[7] seq (retract)   ARGV[8] until (Unix ms, "0" for good)
  -- ARGV[9] the action's record (JSON made by Rust)   ARGV[10] the staff's audience tag
  -- ARGV[11] most entries of a list
  room_epoch()
  local a, user = ARGV[5], ARGV[6]
  if a == "retract" then
    if tonumber(ARGV[7]) > tonumber(redis.call("HGET", meta, "seq") or "0") then
      return {err = "DM_NO_SUCH_SEQ"}
    end
    local rt = tag .. ":rt"
    redis.call("ZADD", rt, ARGV[7], ARGV[7])
    redis.call("ZREMRANGEBYRANK", rt, 0, -1001)
    redis.call("PEXPIRE", rt, ttl)
  else
    local list = (a == "mute" or a == "unmute") and mutes or bans
    if a == "mute" or a == "ban" then
      if redis.call("HEXISTS", list, user) == 0
          and redis.call("HLEN", list) >= tonumber(ARGV[11]) then
        local all = redis.call("HGETALL", list)
        for i = 1, #all, 2 do
          if all[i + 1] ~= "0" and tonumber(all[i + 1]) <= tonumber(now) then
            redis.call("HDEL", list, all[i])
          end
        end
        if redis.call("HLEN", list) >= tonumber(ARGV[11]) then
          return {err = "DM_TOO_MANY_MODERATED"}
        end
      end
      redis.call("HSET", list, user, ARGV[8])
      redis.call("HSET", meta, "mods", 1)
      redis.call("PEXPIRE", list, ttl)
    else
      redis.call("HDEL", list, user)
    end
  end
  local log = tag .. ":ml"
  redis.call("RPUSH", log, ARGV[9])
  redis.call("LTRIM", log, -1000, -1)
  redis.call("PEXPIRE", log, ttl)
  if a == "retract" then
    result = sequence("retract:dh", '{"seq":' .. ARGV[7] .. '}')
  else
    result = sequence("moderation:dh", ARGV[10] .. ARGV[9])
  end
elseif op == "arrive" then
  -- A join. ARGV[5] user   ARGV[6] today (UTC days since the epoch, the gateway's
  -- clock)   ARGV[7] its name as a JSON string   ARGV[8] its tags, "\31"-wrapped
  -- ARGV[9] its VIP entry (JSON made by Rust)   ARGV[10] the default VIP tags,
  -- "\31"-wrapped (a room whose settings were set has its own: meta vip)
  -- ARGV[11] "1" when it counts in entrances   ARGV[12] most users seen
  -- ARGV[13] "1" when rooms tell entrances by default (a room whose settings were set
  -- has its own, the 6th field of meta rules)
  -- Returns {muted, banned (ms left, "0" for good, "" when not), returning (0/1),
  -- visits, welcome templates ("" for none), entered (1: counted in entrances)}.
  -- The seen record <tag>:seen (user →
  -- "<last day>:<days>") outlives the room: 31 days after its last write. A user last
  -- seen more than 30 days ago starts over (as protocol/src/welcome.rs `visit`).
  local user, today = ARGV[5], tonumber(ARGV[6])
  local muted, banned = listed(mutes, user) or "", listed(bans, user) or ""
  local seen = tag .. ":seen"
  local before = redis.call("HGET", seen, user)
  local last, visits, returning = today, 1, 0
  if before then
    local l, v = string.match(before, "^(%d+):(%d+)$")
    l, v = tonumber(l), tonumber(v)
    if l and today - l <= 30 then
      returning, last, visits = 1, math.max(l, today), v
      if today > l then visits = v + 1 end
    end
  end
  if before or redis.call("HLEN", seen) < tonumber(ARGV[12]) then
    redis.call("HSET", seen, user, last .. ":" .. visits)
    redis.call("PEXPIRE", seen, 31 * 86400000)
  end
  local telling = ARGV[13] == "1"
  if rules then telling = string.match(rules, " (%d)$") == "1" end
  local entered = 0
  if telling and ARGV[11] == "1" and banned == "" then
    entered = 1
    local en = tag .. ":en"
    local n = redis.call("HINCRBY", en, "c", 1)
    if n <= 5 then redis.call("HSET", en, "n" .. n, ARGV[7]) end
    local vip = ARGV[10]
    if rules then vip = redis.call("HGET", meta, "vip") or "" end
    if vip ~= "" and ARGV[8] ~= "" and x_eligible(string.sub(vip, 2, -2), ARGV[8]) then
      local k = redis.call("HINCRBY", en, "vc", 1)
      if k <= 20 then redis.call("HSET", en, "v" .. k, ARGV[9]) end
    end
    redis.call("PEXPIRE", en, ttl)
  end
  return {muted, banned, returning, visits, redis.call("HGET", meta, "welcome") or "", entered}
elseif op == "set_welcome" then
  -- ARGV[5] the templates (JSON made by Rust; "" for none)
  room_epoch()
  if ARGV[5] == "" then redis.call("HDEL", meta, "welcome")
  else redis.call("HSET", meta, "welcome", ARGV[5]) end
  return {"", 0, 0}
elseif op == "entrance_flush" then
  -- Sequences the room's pending entrances as one `entrance` event, at most one every
  -- ARGV[5] ms: {"", 0, 1} when it is too early (try again), {"", 0, 0} when there is
  -- nothing to tell.
  local en = tag .. ":en"
  local e = redis.call("HGETALL", en)
  if #e == 0 then return {"", 0, 0} end
  local last = tonumber(redis.call("HGET", meta, "en_at") or "0")
  if tonumber(now) - last < tonumber(ARGV[5]) then return {"", 0, 1} end
  local f = {}
  for i = 1, #e, 2 do f[e[i]] = e[i + 1] end
  local names, vips = {}, {}
  for i = 1, 5 do if f["n" .. i] then table.insert(names, f["n" .. i]) end end
  for i = 1, 20 do if f["v" .. i] then table.insert(vips, f["v" .. i]) end end
  redis.call("DEL", en)
  redis.call("HSET", meta, "en_at", now)
  result = sequence("entrance:dl", '{"count":' .. (f.c or "0") .. ',"names":[' ..
    table.concat(names, ",") .. '],"vip":[' .. table.concat(vips, ",") ..
    '],"vip_count":' .. (f.vc or "0") .. '}')
elseif op == "analytics" then
  -- Retention data: a batch of ops applied in order, as fanout/src/analytics.rs
  -- (`Counters::apply`, whose counter names these are) applies them in memory.
  -- ARGV[5] how long after its end a resume continues a visit (ms)   ARGV[6] most
  -- visits kept   ARGV[7] most minutes recorded   ARGV[8..] the ops, fields
  -- "\31"-separated (a variant "" for none):
  --   J user owner at variant resumed(""|"0"|"1") first_render_ms("" for none)
  --   L user owner at since variant
  --   M user owner start minutes variant
  --   I kind at variant
  --   O at online
  -- <tag>:an the counters (hash)   <tag>:av the visits (hash user →
  -- "<start>\30<owner>\30<end or "">\30<dwell>\30<marks>"). Both live as the room does.
  -- Returns one integer per op: a join's visit start, -1 otherwise.
  local an, av = tag .. ":an", tag .. ":av"
  local win, max_visits, max_minutes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local function int(x) return string.format("%.0f", x) end
  local function add(name, n) return redis.call("HINCRBY", an, name, n) end
  local function scoped(variant, what, n)
    add("*|" .. what, n)
    if variant ~= "" then add(variant .. "|" .. what, n) end
  end
  local function bucket(v)
    if v < 100 then return v end
    local step = 1
    while math.floor(v / step) >= 100 do step = step * 10 end
    return math.floor(v / step) * step
  end
  local function minute(at) return at - at % 60000 end
  local function minute_open(m)
    local p = "t:" .. int(m) .. ":"
    local f = redis.call("HMGET", an, p .. "j", p .. "o", p .. "l", p .. "i")
    if f[1] or f[2] or f[3] or f[4] then return true end
    if tonumber(redis.call("HGET", an, "mins") or "0") >= max_minutes then return false end
    add("mins", 1)
    return true
  end
  local function dwell(variant, d, sign)
    scoped(variant, "d:" .. int(bucket(d)), sign)
    scoped(variant, "ds", sign * d)
    scoped(variant, "dn", sign)
  end
  local function visit_of(user)
    local raw = redis.call("HGET", av, user)
    if not raw then return nil end
    local start, owner, ended, d, marks = string.match(raw, "^(%d+)\30(.-)\30(%d*)\30(%d+)\30(%d+)$")
    if not start then return nil end
    return {start = tonumber(start), owner = owner, ended = tonumber(ended), dwell = tonumber(d),
            marks = tonumber(marks)}
  end
  local function keep(user, v)
    redis.call("HSET", av, user, int(v.start) .. "\30" .. v.owner .. "\30" ..
      (v.ended and int(v.ended) or "") .. "\30" .. int(v.dwell) .. "\30" .. int(v.marks))
  end
  local out = {}
  for i = 8, #ARGV do
    local f = {}
    for part in string.gmatch(ARGV[i] .. "\31", "(.-)\31") do table.insert(f, part) end
    local kind, result = f[1], -1
    if kind == "J" then
      local user, owner, at, variant, resumed, first = f[2], f[3], tonumber(f[4]), f[5], f[6], f[7]
      if first ~= "" then
        scoped(variant, "f:" .. int(bucket(tonumber(first))), 1)
        scoped(variant, "fn", 1)
      end
      if resumed ~= "" then
        scoped(variant, "r", 1)
        if resumed == "1" then scoped(variant, "rr", 1) end
      end
      local v = visit_of(user)
      if resumed ~= "" and v and (v.ended == nil or at - v.ended <= win) then
        if v.ended then
          -- The visit goes on: the dwell told at its end is taken back (with the
          -- variant of that end, the room's; a variant's own is the same visit's).
          dwell(variant, v.dwell, -1)
          v.ended, v.dwell = nil, 0
        end
        v.owner = owner
        keep(user, v)
        result = v.start
      else
        scoped(variant, "j", 1)
        local m = minute(at)
        if minute_open(m) then
          add("t:" .. int(m) .. ":j", 1)
          scoped(variant, "m:" .. int(m) .. ":j", 1)
        end
        if v or redis.call("HLEN", av) < max_visits then
          if not v then scoped(variant, "u", 1) end
          keep(user, {start = at, owner = owner, ended = nil, dwell = 0, marks = 0})
        end
        result = at
      end
    elseif kind == "L" then
      local user, owner, at, since, variant = f[2], f[3], tonumber(f[4]), tonumber(f[5]), f[6]
      local v = visit_of(user)
      local start
      if v then
        if v.owner == owner and v.ended == nil then
          start = v.start
          v.ended, v.dwell = at, math.max(0, at - v.start)
          keep(user, v)
        end
      else
        start = since
      end
      if start then
        dwell(variant, math.max(0, at - start), 1)
        local m = minute(at)
        if minute_open(m) then add("t:" .. int(m) .. ":l", 1) end
      end
    elseif kind == "M" then
      local user, owner, start, minutes, variant = f[2], f[3], tonumber(f[4]), f[5], f[6]
      local bit = ({["1"] = 1, ["5"] = 2, ["15"] = 4})[minutes]
      local v = visit_of(user)
      local counts = bit ~= nil
      if counts and v then
        if v.owner ~= owner or math.floor(v.marks / bit) % 2 == 1 then
          counts = false
        else
          v.marks = v.marks + bit
          keep(user, v)
        end
      end
      local m = int(minute(start))
      if counts and redis.call("HEXISTS", an, "*|m:" .. m .. ":j") == 1 then
        scoped(variant, "m:" .. m .. ":" .. minutes, 1)
      end
    elseif kind == "I" then
      local what, at, variant = f[2], tonumber(f[3]), f[4]
      scoped(variant, "i:" .. what, 1)
      local m = minute(at)
      if minute_open(m) then add("t:" .. int(m) .. ":i", 1) end
    elseif kind == "O" then
      local at, n = tonumber(f[2]), tonumber(f[3])
      local m = minute(at)
      if minute_open(m) then
        local field = "t:" .. int(m) .. ":o"
        if tonumber(redis.call("HGET", an, field) or "0") < n then
          redis.call("HSET", an, field, int(n))
        end
      end
    end
    table.insert(out, result)
  end
  redis.call("PEXPIRE", an, ttl)
  redis.call("PEXPIRE", av, ttl)
  return out
elseif op == "analytics_get" then
  -- The counters: {name, value, name, value, …}.
  return redis.call("HGETALL", tag .. ":an")
elseif op == "moderation_log" then
  return redis.call("LRANGE", tag .. ":ml", 0, -1)
elseif op == "settings_get" then
  -- The room's settings: {version, settings JSON ("" when never set)}.
  return doc_read("settings")
elseif op == "settings_put" then
  -- ARGV[5] the version read by settings_get   ARGV[6] the new settings (JSON made by
  -- Rust)   ARGV[7] their comment rules "<slow ms> <min level> <comments/s>
  -- <merge after> <merge window ms>"   ARGV[8] their blocked words, "\31"-wrapped
  -- ARGV[9] their VIP tags, "\31"-wrapped.
  -- Written and sequenced only if nobody wrote since the read: {"", 0, 9} tells the
  -- caller to read and apply its patch again.
  if not doc_write("settings", ARGV[5], ARGV[6]) then return {"", 0, 9} end
  redis.call("HSET", meta, "rules", ARGV[7], "bw", ARGV[8], "vip", ARGV[9])
  result = sequence("settings:dh", ARGV[6])
elseif op == "seats_get" then
  -- The co-host seats: {version, state JSON ("" when none)}.
  return doc_read("seats")
elseif op == "seats_put" then
  -- ARGV[5] the version read by seats_get   ARGV[6] the new state (JSON made by Rust)
  -- ARGV[7] its public `seats` data ("" when unchanged)   ARGV[8..] the events of the
  -- move, each "<kind>:dh" and its body (an audience tag and data, or data).
  -- Written only if nobody wrote since the read: {"", 0, 9} tells the caller to read
  -- and apply its move again. The public state is what joins read (meta seats_doc).
  if not doc_write("seats", ARGV[5], ARGV[6]) then return {"", 0, 9} end
  if ARGV[7] ~= "" then redis.call("HSET", meta, "seats_doc", ARGV[7]) end
  result = {"", 0, 0}
  for i = 8, #ARGV - 1, 2 do
    local r = sequence(ARGV[i], ARGV[i + 1])
    if result[1] == "" then result = r end
  end
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
  local muted = listed(mutes, ARGV[6])
  if muted then return redis.error_reply("DM_MUTED " .. muted) end
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
  -- Keyword games, quizzes and lotteries: counts coalesced, closed at their end; the
  -- lotteries closed and not drawn yet are answered for the caller to draw.
  for _, id in ipairs(redis.call("SMEMBERS", xs .. "open")) do
    local dirty = redis.call("SREM", xs .. "dirty", id) == 1
    local x = redis.call("HMGET", xs .. id, "kind", "ends")
    if not x[1] then
      redis.call("SREM", xs .. "open", id)
    elseif tonumber(x[2]) <= tonumber(now) then
      if x_shut(id, x[1]) then published = published + 1 end
    elseif dirty then
      sequence(x_kind_name(x[1]) .. ":dh", x_body(id))
      published = published + 1
    end
  end
  result = {"", published, 0}
  for _, id in ipairs(redis.call("SMEMBERS", xs .. "drawing")) do
    if redis.call("EXISTS", xs .. id) == 1 then
      table.insert(result, id)
    else
      redis.call("SREM", xs .. "drawing", id)
    end
  end
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
  return bodies(polls .. "open", poll_body)
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
if comment_counted and result then result[4] = 1 end
refresh()
return result
