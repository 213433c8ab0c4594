-- Acquire + release pairs with the live leases bounded, as in a call system: each thread
-- acquires new keys and releases the key it acquired `lag` acquires earlier. A thread
-- drives many connections (wrk -t2 -c64: 32 each), each with at most one request in
-- flight, so an acquire sent `lag` > connections-per-thread acquires ago has been
-- answered before its release is sent. Pass lag as the script's argument:
--   wrk -t2 -c64 -s acquire_release.lua URL -- 40
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local lag = 40
function init(args)
  lag = tonumber(args[1]) or 40
end

local n, m = 0, 0
local keys, head, tail = {}, 1, 1
function request()
  n = n + 1
  if n % 2 == 1 or (tail - head) < lag then
    m = m + 1
    local key = "k" .. tid .. "-" .. m
    keys[tail] = key
    tail = tail + 1
    return wrk.format("POST", "/v1/acquire", { ["Content-Type"] = "application/json" },
      '{"flow":"calls","key":"' .. key .. '"}')
  end
  local key = keys[head]
  keys[head] = nil
  head = head + 1
  return wrk.format("DELETE", "/v1/leases?key=" .. key)
end
