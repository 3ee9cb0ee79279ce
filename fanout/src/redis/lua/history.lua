-- Events after a seq, if the stream still holds all of them.
-- KEYS[1] meta   KEYS[2] stream   ARGV[1] since   ARGV[2] limit
-- ARGV[3] now (ms)   ARGV[4] history age (ms)
-- Returns {epoch or "", head, status, retracted, records...}; status 0 ok, 1 gone,
-- 2 ahead; `retracted` the seqs moderators took back, comma-separated.
-- A record older than the history age is gone, as if trimmed.
local epoch = redis.call("HGET", KEYS[1], "epoch")
local head = tonumber(redis.call("HGET", KEYS[1], "seq") or "0")
local since = tonumber(ARGV[1])
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local retracted = table.concat(redis.call("ZRANGE", string.gsub(KEYS[1], ":m$", ":rt"), 0, -1), ",")
local out = {epoch or "", head, 0, retracted}
if not epoch then
  if since == 0 then return out end
  out[3] = 1
  return out
end
if since > head then out[3] = 2 return out end
if since == head then return out end
local events = redis.call("XRANGE", KEYS[2], (since + 1) .. "-0", "+", "COUNT", tonumber(ARGV[2]))
local ts = #events > 0 and tonumber(string.match(events[1][2][2], "^%d+:[^:]*:(%d+):"))
if #events == 0 or events[1][1] ~= (since + 1) .. "-0" or not ts or ts < cutoff then
  out[3] = 1
  return out
end
for _, e in ipairs(events) do table.insert(out, e[2][2]) end
return out
