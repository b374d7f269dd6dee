-- bench_peers: the Tarantool side of the workloads (tarantool init.lua DIR).
-- wal_mode fsync: a transaction is fsynced to the WAL before it returns
-- (Tarantool's WAL thread writes the transactions of many fibers at once).
-- A create runs the Lua procedure crm_create; the contacts space's on_replace
-- trigger upserts the loyalty account in the same transaction and, once it
-- commits, hands the record to the subscribers.  Subscribers long-poll
-- crm_changes(since), which waits on a fiber.cond until there is news.
local dir = arg[1]
local fiber = require('fiber')

box.cfg{
    listen = '127.0.0.1:0',
    work_dir = dir,
    wal_mode = 'fsync',
    memtx_memory = 1024 * 1024 * 1024,
    net_msg_max = 16384,   -- long polls hold a message each: 1,000 subscribers and more
    readahead = 65536,
    log = dir .. '/tarantool.log',
    checkpoint_interval = 0,
}
box.schema.user.grant('guest', 'read,write,execute', 'universe', nil, {if_not_exists = true})

local contacts = box.schema.space.create('contacts', {if_not_exists = true})
contacts:format({
    {name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'},
    {name = 'email', type = 'string'}, {name = 'phone', type = 'string'},
    {name = 'job_title', type = 'string'}, {name = 'street', type = 'string'},
    {name = 'city', type = 'string'}, {name = 'postcode', type = 'string'},
    {name = 'country', type = 'string'}, {name = 'owner', type = 'string'},
    {name = 'source', type = 'string'}, {name = 'language', type = 'string'},
})
box.schema.sequence.create('contact_id', {if_not_exists = true})
contacts:create_index('primary', {sequence = 'contact_id', if_not_exists = true})
contacts:create_index('city', {parts = {{'city', 'string'}}, unique = false, if_not_exists = true})
local loyalty = box.schema.space.create('loyalty', {if_not_exists = true})
loyalty:create_index('primary', {parts = {{1, 'unsigned'}}, if_not_exists = true})

-- the change ring the subscribers read from
local KEEP = 100000
local changes, seq = {}, 0
local news = fiber.cond()

local function publish(t)
    seq = seq + 1
    changes[seq] = t
    changes[seq - KEEP] = nil
    news:broadcast()
end

contacts:on_replace(function(old, new)
    if old == nil and new ~= nil then
        box.space.loyalty:upsert({new[1], 10}, {{'+', 2, 10}})
        box.on_commit(function() publish(new) end)
    end
end)

function crm_create(name, email, phone, job_title, street, city, postcode, country, owner,
                    source, language)
    local t = box.space.contacts:insert{box.NULL, name, email, phone, job_title, street, city,
                                        postcode, country, owner, source, language}
    return t[1]
end

function crm_get(id)
    return box.space.contacts:get(id)
end

function crm_by_city(city)
    return box.space.contacts.index.city:select(city, {limit = 10})
end

function crm_seq()
    return seq
end

-- Every change after since (waits up to timeout seconds for one): seq, {tuples}.
-- crm_changes(-1): the current seq and no changes, at once (a new subscriber).
function crm_changes(since, timeout)
    if since < 0 then
        return seq, {}
    end
    if since >= seq then
        news:wait(timeout)
    end
    local out = {}
    for i = math.max(since + 1, seq - KEEP + 1), seq do
        out[#out + 1] = changes[i]
    end
    return seq, out
end

local f = io.open(dir .. '/port', 'w')
f:write(box.info.listen:match(':(%d+)$'))
f:close()
