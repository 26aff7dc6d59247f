-- wrk script for durable all-win claims over HTTP (issue 15).
-- Each request claims for a user id no other request uses: the thread's
-- number and a per-thread counter. Claims go through the JSON API as the
-- admin bridge (the admin bearer vouches for the user id it names).
-- Environment: MICRODROP_ADMIN_TOKEN, DROP (the drop id), PREFIX (optional,
-- to keep runs against the same drop apart).
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  prefix = (os.getenv("PREFIX") or "w") .. tid .. "-"
  wrk.method = "POST"
  wrk.path = "/api/drops/" .. os.getenv("DROP") .. "/claims"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("MICRODROP_ADMIN_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
  ok, other = 0, 0
end

function request()
  n = n + 1
  local u = prefix .. n
  return wrk.format(nil, nil, nil, '{"user_id":"' .. u .. '","login":"' .. u .. '"}')
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"outcome":"won"', 1, true) then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local won, rest = 0, 0
  for _, t in ipairs(threads) do
    won = won + t:get("ok")
    rest = rest + t:get("other")
  end
  io.write(string.format('{"requests":%d,"seconds":%.3f,"per_sec":%.1f,"won":%d,"not_won":%d,"socket_errors":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6), won, rest,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
