-- A room's state for a join, read atomically; the join keeps the room alive.
-- KEYS[1] meta   KEYS[2] stream   KEYS[3] prefix of the room's poll keys
-- ARGV[1] epoch to create if the room has none   ARGV[2] recent count
-- ARGV[3] since epoch ("" for none)   ARGV[4] since seq
-- ARGV[5] now (ms)   ARGV[6] history age (ms)   ARGV[7] room TTL (ms)
-- Returns {epoch, seq, likes, recovered(0/1), open polls, stage, seats, settings,
-- retracted, records...}: with
-- recovered = 1 the records are the events after since (in order); otherwise the last
-- `recent` events. `open polls` counts the room's open polls, so a join reads them only
-- when there are any (most rooms have none); `stage` is the stage object and `seats` the
-- co-host seats' public state and `settings` the room's settings ("" when none);
-- `retracted` the seqs moderators took back, comma-separated.
-- Records older than the history age are not history any more.
local meta, stream = KEYS[1], KEYS[2]
local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[6])
local epoch = redis.call("HGET", meta, "epoch")
if not epoch then
  epoch = ARGV[1]
  redis.call("DEL", stream, KEYS[3] .. "open", KEYS[3] .. "dirty")
  redis.call("HSET", meta, "epoch", epoch, "seq", 0, "likes", 0, "polls", 0)
end
redis.call("PEXPIRE", meta, ARGV[7])
redis.call("PEXPIRE", stream, ARGV[7])
local function fresh(record)
  local ts = tonumber(string.match(record, "^%d+:[^:]*:(%d+):"))
  return ts and ts >= cutoff
end
local seq = tonumber(redis.call("HGET", meta, "seq") or "0")
local likes = tonumber(redis.call("HGET", meta, "likes") or "0")
local shown = redis.call("HMGET", meta, "stage", "seats_doc", "settings")
local stage, seats, settings = shown[1] or "", shown[2] or "", shown[3] or ""
-- Open polls, coupons and other interactions counted together: any makes the join read
-- them.
local open = redis.call("SCARD", KEYS[3] .. "open")
  + redis.call("SCARD", string.gsub(KEYS[3], ":p:$", ":k:") .. "open")
  + redis.call("SCARD", string.gsub(KEYS[3], ":p:$", ":x:") .. "open")
local retracted = table.concat(redis.call("ZRANGE", string.gsub(meta, ":m$", ":rt"), 0, -1), ",")
local out = {epoch, seq, likes, 0, open, stage, seats, settings, retracted}
local since = tonumber(ARGV[4])
if ARGV[3] == epoch and since <= seq then
  if since == seq then
    out[4] = 1
    return out
  end
  local first = redis.call("XRANGE", stream, (since + 1) .. "-0", "+", "COUNT", 1)
  if #first == 1 and first[1][1] == (since + 1) .. "-0" and fresh(first[1][2][2]) then
    out[4] = 1
    for _, e in ipairs(redis.call("XRANGE", stream, (since + 1) .. "-0", "+")) do
      table.insert(out, e[2][2])
    end
    return out
  end
end
local recent = redis.call("XREVRANGE", stream, "+", "-", "COUNT", tonumber(ARGV[2]))
for i = #recent, 1, -1 do
  if fresh(recent[i][2][2]) then table.insert(out, recent[i][2][2]) end
end
return out
