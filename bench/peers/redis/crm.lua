#!lua name=crmbench
-- bench_peers: the Redis side of the workloads, loaded with FUNCTION LOAD.
-- crm_create does what crmd's create and its hook do, in one function (Redis
-- runs it atomically and, with appendfsync always, fsyncs the AOF before it
-- replies): store the contact, index it by city, credit 10 loyalty points to
-- the new contact's account, publish the record to the subscribers.

local FIELDS = {'name', 'email', 'phone', 'job_title', 'street', 'city', 'postcode',
                'country', 'owner', 'source', 'language'}

local function crm_create(keys, args)
  local id = redis.call('INCR', 'contact:seq')
  local key = 'contact:' .. id
  local hset = {'HSET', key}
  local rec = {id = tostring(id)}
  for i, f in ipairs(FIELDS) do
    hset[#hset + 1] = f
    hset[#hset + 1] = args[i]
    rec[f] = args[i]
  end
  redis.call(unpack(hset))
  redis.call('SADD', 'city:' .. args[6], id)
  redis.call('HINCRBY', 'loyalty:' .. id, 'points', 10)
  redis.call('PUBLISH', 'contacts', cjson.encode(rec))
  return id
end

-- At most args[2] contacts of city args[1], through the city's set.
local function crm_by_city(keys, args)
  local ids = redis.call('SRANDMEMBER', 'city:' .. args[1], tonumber(args[2]))
  local out = {}
  for i, id in ipairs(ids) do
    out[i] = redis.call('HGETALL', 'contact:' .. id)
  end
  return out
end

redis.register_function('crm_create', crm_create)
redis.register_function{function_name = 'crm_by_city', callback = crm_by_city,
                        flags = {'no-writes'}}
