-- wrk script: send each pre-made score update once, in order, from a tab-separated file of
-- "token<TAB>json body" lines (path in the first script argument), to the route in the second
-- (default /api/scores/update; /api/scores/batch for batches).
local requests = {}
local next_index = 0

init = function(args)
  local path = args[2] or "/api/scores/update"
  for line in io.lines(args[1]) do
    local token, body = line:match("([^\t]+)\t(.+)")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }, body)
  end
end

request = function()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

-- Print the first refusal of each status, so a run with errors says why.
local seen = {}

response = function(status, headers, body)
  if status ~= 200 and not seen[status] then
    seen[status] = true
    io.stderr:write("first " .. status .. ": " .. body .. "\n")
  elseif status == 200 and not seen.item and body:find('"success":false', 1, true) then
    seen.item = true -- a batch answers 200 with its refused items inside
    io.stderr:write("first refused batch item in: " .. body:sub(1, 400) .. "\n")
  end
end
