-- lifecycle.lua -- customer lifecycle automation (docs/features/lifecycle.md)
--
-- Stages: prospect -> new_customer (first order) -> repeat (second order)
-- -> loyal (CONFIG.loyal_*), and at_risk / churned after inactivity.
-- Kept on each contact: order_count, total_spent, first_order_at,
-- last_order_at, last_interaction_at (from after-hooks on orders and
-- interactions), lifecycle_stage, stage_changed_at and life_phase.  Every
-- stage change is a record in lifecycle_transitions.  Inactivity is a durable
-- timer per contact (name "inactivity", key = contact id), rescheduled on
-- every activity, so exactly one is pending per contact.

--------------------------------------------------------------------------
-- CONFIG: a consultant edits this table, then `kill -HUP` the server.
--------------------------------------------------------------------------
local CONFIG = {
  -- loyal: at least this many counted orders ...
  loyal_min_orders = 5,
  -- ... or at least 2 orders and this much spent in total (minor units,
  -- e.g. cents; amounts are summed as they are, whatever their currency).
  -- nil: spending alone never makes a customer loyal.
  loyal_min_spent = 100000,

  -- days without an order or interaction before a customer is at_risk
  at_risk_after_days = 90,
  -- further days (after at_risk) before the customer is churned
  churned_after_days = 90,

  -- which stages can lapse into at_risk/churned (prospects never bought,
  -- so by default they do not lapse)
  lapse_stages = {new_customer = true, ["repeat"] = true, loyal = true},

  -- whether an interaction (call, email, visit ...) counts as activity;
  -- when false only orders keep a customer active
  interactions_are_activity = true,

  -- which interactions are with the customer (only those count): not one
  -- made by a system owner (an automated e-mail, an escalation note); an
  -- outbound one only with an outcome showing the customer answered; an
  -- inbound one, or one with no direction, always
  activity = {
    system_owners = {"system", "automation", "bot"},
    outbound_outcomes = {"positive", "neutral", "negative", "follow_up"},
  },

  -- order statuses that count (orders in other statuses -- cancelled,
  -- refunded -- are not counted in order_count/total_spent and are no activity)
  counted_statuses = {"pending", "paid", "shipped", "completed"},

  -- five-phase customer life cycle, read from the stage
  -- ("repeat" is a Lua keyword, hence the brackets)
  phase_of_stage = {
    prospect     = "acquisition",
    new_customer = "growth",
    ["repeat"]   = "growth",
    loyal        = "maturity",
    at_risk      = "decline",
    churned      = "termination",
  },

  -- contacts per call of the chunked re-evaluation (lifecycle.reevaluate)
  page = 200,
}
--------------------------------------------------------------------------

local DAY_MS = 86400 * 1000
local TIMER = "inactivity"
local COUNTED = {}
for _, s in ipairs(CONFIG.counted_statuses) do COUNTED[s] = true end
local COUNTED_LIST = crm.array(CONFIG.counted_statuses)
local LAPSED = {at_risk = true, churned = true}
local RANK = {prospect = 0, new_customer = 1, ["repeat"] = 2, loyal = 3}
local SYSTEM_OWNER, ANSWERED = {}, {}
for _, o in ipairs(CONFIG.activity.system_owners) do SYSTEM_OWNER[o] = true end
for _, o in ipairs(CONFIG.activity.outbound_outcomes) do ANSWERED[o] = true end

-- Whether interaction i was with the customer (CONFIG.activity).
local function with_customer(i)
  if i.owner and SYSTEM_OWNER[i.owner] then return false end
  if i.direction == "outbound" then return i.outcome ~= nil and ANSWERED[i.outcome] == true end
  return true
end

-- Why the next stage change happens: set by the code that writes the
-- contact, read by the before-hook below that records the transition
-- (both run in this script's state, the hook inside crm.update).
local pending = nil

-- The contribution of an order to its contact's figures, or nil.
local function contribution(o)
  if not o or not o.contact or not COUNTED[o.status or "pending"] then return nil end
  return {contact = o.contact, amount = o.amount or 0, at = o.ordered_at}
end

-- The stage the order history says, before inactivity.
local function base_stage(c)
  local n, spent = c.order_count or 0, c.total_spent or 0
  if n == 0 then return "prospect" end
  if n >= CONFIG.loyal_min_orders then return "loyal" end
  if n >= 2 and CONFIG.loyal_min_spent and spent >= CONFIG.loyal_min_spent then return "loyal" end
  if n >= 2 then return "repeat" end
  return "new_customer"
end

local function last_activity(c)
  local la = c.last_order_at
  if CONFIG.interactions_are_activity and c.last_interaction_at
     and (not la or c.last_interaction_at > la) then
    la = c.last_interaction_at
  end
  return la
end

-- The stage a contact should be in at `now`, and when the next inactivity
-- check is due (nil: none).
local function evaluate(c, now)
  local base = base_stage(c)
  local la = last_activity(c)
  if not CONFIG.lapse_stages[base] or not la then return base, nil end
  local t1 = la + CONFIG.at_risk_after_days * DAY_MS
  local t2 = t1 + CONFIG.churned_after_days * DAY_MS
  if now >= t2 then return "churned", nil end
  if now >= t1 then return "at_risk", t2 end
  return base, t1
end

local function reason_for(from, to, trigger)
  if to == "at_risk" or to == "churned" then return "inactivity" end
  if trigger == "reevaluate" then return "reevaluated" end
  if LAPSED[from] then return "reactivated" end
  if trigger == "order_withdrawn" then return "order_withdrawn" end
  -- down without a withdrawn order: the stage was set by hand, and the
  -- order history says otherwise (a contact created as loyal, first order)
  if RANK[from] and RANK[to] and RANK[to] < RANK[from] then return "recomputed" end
  if to == "new_customer" then return "first_order" end
  if to == "repeat" then return "repeat_order" end
  if to == "loyal" then return "loyalty_threshold" end
  return "manual"
end

-- Writes patch to contact c (with the transition's reason for the
-- before-hook) when it changes anything.
local function write_contact(c, patch, trigger, source)
  local changed = false
  for k, v in pairs(patch) do
    if c[k] ~= v and not (v == crm.null and c[k] == nil) then changed = true break end
  end
  if not changed then return c end
  if patch.lifecycle_stage and patch.lifecycle_stage ~= c.lifecycle_stage then
    pending = {reason = reason_for(c.lifecycle_stage, patch.lifecycle_stage, trigger), source = source}
  end
  local ok, res = pcall(crm.update, "contacts", c.id, patch)
  pending = nil
  if not ok then error(res, 0) end
  return res
end

-- Evaluates contact c as `patch` would leave it, writes it and
-- (re)schedules its inactivity timer.
local function settle(c, patch, trigger, source)
  local now = crm.now()
  local view = {}
  for f, v in pairs(c) do view[f] = v end
  for f, v in pairs(patch) do view[f] = (v ~= crm.null) and v or nil end
  local stage, due = evaluate(view, now)
  if stage ~= c.lifecycle_stage then patch.lifecycle_stage = stage end
  write_contact(c, patch, trigger, source)
  if due then
    crm.schedule(math.max(0, (due - now) / 1000), TIMER, {contact = c.id}, {key = c.id})
  else
    crm.cancel(TIMER, c.id)
  end
end

-- First or last counted order date of a contact, from the orders themselves.
local function order_date(contact, order_by)
  local page = crm.query("orders", {contact = contact, status = {["in"] = COUNTED_LIST}},
                         {order_by = order_by, limit = 1})
  local o = page.records[1]
  return o and o.ordered_at or crm.null
end

-- Applies order contributions to one contact: `add` (counted now) and
-- `rem` (counted before, withdrawn), either may be nil; both at once (an
-- amount or date change) is one net step, so the stage does not flicker.
local function apply_orders(contact, add, rem, source)
  local c = crm.get("contacts", contact)
  if not c then return end
  local patch = {
    order_count = math.max(0, (c.order_count or 0) + (add and 1 or 0) - (rem and 1 or 0)),
    total_spent = math.max(0, (c.total_spent or 0) + (add and add.amount or 0) - (rem and rem.amount or 0)),
  }
  local first, last = c.first_order_at, c.last_order_at
  if rem and patch.order_count == 0 then
    first, last = nil, nil
  elseif rem then
    -- a withdrawn order may have been the first or the last: ask the orders
    if rem.at and last and rem.at >= last then last = order_date(contact, "-ordered_at") end
    if rem.at and first and rem.at <= first then first = order_date(contact, "ordered_at") end
    if first == crm.null then first = nil end
    if last == crm.null then last = nil end
  end
  if add and add.at then
    if not last or add.at > last then last = add.at end
    if not first or add.at < first then first = add.at end
  end
  patch.first_order_at = first or crm.null
  patch.last_order_at = last or crm.null
  settle(c, patch, add and "order" or "order_withdrawn", source)
end

crm.on("orders.*", function(ev)
  local add = ev.op ~= "delete" and contribution(ev.record) or nil
  local rem = ev.op ~= "create" and contribution(ev.prev) or nil
  if add and rem and add.contact == rem.contact and add.amount == rem.amount and add.at == rem.at then
    return -- status moved between counted statuses, or another field changed
  end
  local source = "orders/" .. ev.id
  if add and rem and add.contact == rem.contact then
    apply_orders(add.contact, add, rem, source)
  else
    if rem then apply_orders(rem.contact, nil, rem, source) end
    if add then apply_orders(add.contact, add, nil, source) end
  end
end, {name = "orders"})

crm.on("interactions.*", function(ev)
  if ev.op == "delete" or not ev.record or not ev.record.at then return end
  local i = ev.record
  if not with_customer(i) then return end
  if ev.prev and ev.prev.at == i.at and ev.prev.contact == i.contact then return end
  local c = crm.get("contacts", i.contact)
  if not c then return end
  local patch = {}
  if not c.last_interaction_at or i.at > c.last_interaction_at then
    patch.last_interaction_at = i.at
  end
  settle(c, patch, "interaction", "interactions/" .. ev.id)
end, {name = "interactions"})

crm.on_timer(TIMER, function(payload)
  local c = crm.get("contacts", payload.contact)
  if not c then return end
  settle(c, {}, "timer", "timer")
end)

-- Every stage change, whoever makes it (this script, a client, another
-- script), gets stage_changed_at, life_phase and a transition record.
crm.on("contacts.update", function(ev)
  local r, p = ev.record, ev.prev
  local stage = r.lifecycle_stage or "prospect"
  local phase = CONFIG.phase_of_stage[stage]
  if phase and r.life_phase ~= phase then r.life_phase = phase end
  local from = p and p.lifecycle_stage or "prospect"
  if stage == from then return end
  local now = crm.now()
  r.stage_changed_at = now
  local why = pending or {reason = "manual"}
  pending = nil
  crm.create("lifecycle_transitions", {
    contact = ev.id, from = from, to = stage,
    from_phase = CONFIG.phase_of_stage[from], to_phase = phase,
    at = now, reason = why.reason, source = why.source,
  })
end, {phase = "before"})

crm.on("contacts.create", function(ev)
  local r = ev.record
  local phase = CONFIG.phase_of_stage[r.lifecycle_stage or "prospect"]
  if phase then r.life_phase = phase end
  r.stage_changed_at = r.stage_changed_at or crm.now()
end, {phase = "before"})

-- A contact created in a stage other than prospect (an import) gets its
-- first transition record once it exists.
crm.on("contacts.create", function(ev)
  local stage = ev.record.lifecycle_stage
  if not stage or stage == "prospect" then return end
  crm.create("lifecycle_transitions", {
    contact = ev.id, to = stage, to_phase = CONFIG.phase_of_stage[stage],
    at = ev.record.stage_changed_at or ev.record._created, reason = "created", source = "create",
  })
end, {name = "contacts_created"})

--------------------------------------------------------------------------
-- Methods
--------------------------------------------------------------------------

-- lifecycle.refresh {contact = id}: recounts one contact's orders and
-- interactions from the records themselves (a repair), then evaluates it.
crm.method("lifecycle.refresh", function(params)
  local c = params and params.contact and crm.get("contacts", params.contact)
  if not c then crm.reject("lifecycle.refresh: no such contact") end
  local n, spent, first, last, after = 0, 0, nil, nil, nil
  repeat
    local page = crm.query("orders", {contact = c.id, status = {["in"] = COUNTED_LIST}},
                           {limit = 1000, after = after})
    for _, o in ipairs(page.records) do
      n, spent = n + 1, spent + (o.amount or 0)
      if o.ordered_at and (not first or o.ordered_at < first) then first = o.ordered_at end
      if o.ordered_at and (not last or o.ordered_at > last) then last = o.ordered_at end
    end
    after = page.next
  until not after
  -- the newest interaction with the customer (among the newest 1000)
  local li
  for _, i in ipairs(crm.query("interactions", {contact = c.id}, {order_by = "-at", limit = 1000}).records) do
    if with_customer(i) then li = i break end
  end
  local patch = {order_count = n, total_spent = spent,
                 first_order_at = first or crm.null, last_order_at = last or crm.null,
                 last_interaction_at = li and li.at or crm.null}
  settle(c, patch, "reevaluate", "lifecycle.refresh")
  local r = crm.get("contacts", c.id)
  return {contact = r.id, lifecycle_stage = r.lifecycle_stage, life_phase = r.life_phase,
          order_count = r.order_count, total_spent = r.total_spent}
end)

-- lifecycle.reevaluate {}: after a change of CONFIG, re-evaluates every
-- contact (stage, phase, timer) in chunks of CONFIG.page, one timer call each.
crm.method("lifecycle.reevaluate", function()
  crm.schedule(0, "reevaluate_page", {}, {key = "job"})
  return {started = true}
end)

crm.on_timer("reevaluate_page", function(job)
  local page = crm.query("contacts", nil, {limit = CONFIG.page, after = job.after})
  for _, c in ipairs(page.records) do
    local patch = {}
    local phase = CONFIG.phase_of_stage[c.lifecycle_stage or "prospect"]
    if phase and phase ~= c.life_phase then patch.life_phase = phase end
    settle(c, patch, "reevaluate", "lifecycle.reevaluate")
  end
  if page.next then
    crm.schedule(0, "reevaluate_page", {after = page.next}, {key = "job"})
  else
    crm.log("info", "lifecycle.reevaluate done")
  end
end)
