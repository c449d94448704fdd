-- wrk script: every request is a brand-new submission.
--
-- Each request carries a fresh Idempotency-Key and a fresh customer_id, so the
-- service can never answer from its idempotency record or an existing stream:
-- we measure the full write path. Keys are "<run nonce>-<thread id>-<counter>";
-- the nonce comes from the harness (`wrk ... -- <nonce>`) so keys stay unique
-- across runs that share one database.
--
-- done() prints one machine-readable line, prefixed BENCH_RESULT, as JSON.

local BODY = '{"customer_id": "cus_%s", "product_id": "prod_abc", '
  .. '"patient": {"first_name": "Ada", "last_name": "Lovelace", '
  .. '"email": "ada@example.com", "phone": "+15555550100", '
  .. '"date_of_birth": "1990-12-10"}, '
  .. '"chief_complaint": "Persistent cough for two weeks", '
  .. '"medical_history": "None", '
  .. '"answers": [{"question_id": "q1", "answer": "yes"}]}'

-- Main state: hand every thread its own id and keep the threads for done().
local threads = {}
local next_thread_id = 0

function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("id", next_thread_id)
  table.insert(threads, thread)
end

-- Thread state.
local prefix
local counter = 0
non2xx = 0
statuses = {}
error_sample = nil

function init(args)
  local nonce = args[1] or string.format("%x%x", os.time(), math.random(0, 0xffffff))
  prefix = string.format("%s-%d", nonce, id)
  wrk.method = "POST"
end

function request()
  counter = counter + 1
  local unique = string.format("%s-%d", prefix, counter)
  wrk.headers["Idempotency-Key"] = unique
  return wrk.format(nil, nil, nil, string.format(BODY, unique))
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if error_sample == nil then
      error_sample = key .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

-- Main state again, after the run.
local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local total_non2xx, merged, sample = 0, {}, nil
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + thread:get("non2xx")
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
    sample = sample or thread:get("error_sample")
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_s": %.3f, "rps": %.1f, '
      .. '"p50_ms": %.3f, "p99_ms": %.3f, "non2xx": %d, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"status_counts": {%s}, "error_sample": %s}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, total_non2xx,
    e.connect, e.read, e.write, e.timeout,
    table.concat(parts, ", "), sample and json_string(sample) or "null"))
end
