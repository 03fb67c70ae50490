-- wrk script: POSTs the signed deliveries of $DELIVERIES (sign.py's output)
-- to /webhooks/stripe in turn, and prints one summary line.
local requests = {}
local next_one = 0

init = function(args)
  for line in io.lines(os.getenv("DELIVERIES")) do
    local signature, body = line:match("([^\t]+)\t(.*)")
    requests[#requests + 1] = wrk.format("POST", "/webhooks/stripe",
      { ["Stripe-Signature"] = signature, ["Content-Type"] = "application/json" }, body)
  end
end

request = function()
  next_one = next_one % #requests + 1
  return requests[next_one]
end

done = function(summary, latency, _)
  io.write(string.format("deliveries/s %.0f  p50 %.2f ms  p99 %.2f ms  non-2xx %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status))
end
