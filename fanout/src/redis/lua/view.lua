-- A room's state for a join, read atomically.
-- KEYS[1] meta   KEYS[2] stream
-- ARGV[1] epoch to create if the room has none   ARGV[2] recent count
-- ARGV[3] since epoch ("" for none)   ARGV[4] since seq
-- Returns {epoch, seq, likes, recovered(0/1), events...}: with recovered = 1 the events
-- are those after since (in order); otherwise the last `recent` events.
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call("HGET", meta, "epoch")
if not epoch then
  epoch = ARGV[1]
  redis.call("DEL", stream)
  redis.call("HSET", meta, "epoch", epoch, "seq", 0, "likes", 0)
end
local seq = tonumber(redis.call("HGET", meta, "seq") or "0")
local likes = tonumber(redis.call("HGET", meta, "likes") or "0")
local out = {epoch, seq, likes, 0}
local since = tonumber(ARGV[4])
if ARGV[3] == epoch and since <= seq then
  if since == seq then
    out[4] = 1
    return out
  end
  local first = redis.call("XRANGE", stream, (since + 1) .. "-0", "+", "COUNT", 1)
  if #first == 1 and first[1][1] == (since + 1) .. "-0" then
    out[4] = 1
    for _, e in ipairs(redis.call("XRANGE", stream, (since + 1) .. "-0", "+")) do
      table.insert(out, e[2][2])
    end
    return out
  end
end
local recent = redis.call("XREVRANGE", stream, "+", "-", "COUNT", tonumber(ARGV[2]))
for i = #recent, 1, -1 do
  table.insert(out, recent[i][2][2])
end
return out
