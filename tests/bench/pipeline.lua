-- wrk script for row (e): writes DEPTH requests (default 16) back to back on every
-- connection before reading their answers; wrk counts each answer as one request.
-- Usage: wrk -s pipeline.lua URL -- [DEPTH]

init = function(args)
  local depth = tonumber(args[1]) or 16
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil)
  end
  req = table.concat(batch)
end

request = function()
  return req
end
