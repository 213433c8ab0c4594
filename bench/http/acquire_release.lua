-- One connection per wrk thread (run with -t N -c N), so requests on a connection are
-- strictly sequential: each acquire is followed by the release of the same key.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local n = 0
function request()
  n = n + 1
  local key = "k" .. tid .. "-" .. math.floor((n + 1) / 2)
  if n % 2 == 1 then
    return wrk.format("POST", "/v1/acquire", { ["Content-Type"] = "application/json" },
      '{"flow":"calls","key":"' .. key .. '"}')
  else
    return wrk.format("DELETE", "/v1/leases?key=" .. key)
  end
end
