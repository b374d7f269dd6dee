-- complaints.lua: the complaint (ticket) workflow.
--
--   * states new -> assigned -> in_progress -> resolved -> closed, and reopen;
--     any other move is REJECTED (a before-hook on tickets.update)
--   * automatic assignment on create (least-loaded or round-robin among the
--     active agents of the ticket's team); agents.open_tickets kept current
--   * SLA deadline by priority in business hours on a working calendar;
--     escalation by a durable keyed timer at the deadline (and later levels)
--   * a CSAT survey record when a ticket is closed
--   * the contact's ticket summary in contacts.extra.tickets, and the method
--     tickets.history for the contact's full ticket history
--
-- Guide: docs/features/complaints.md.  Records: tickets, agents, surveys,
-- contacts (extra.tickets only).

---------------------------------------------------------------------------
-- CONFIGURATION: the rules a company changes.  Edit, then reload the
-- scripts (kill -HUP <crmd pid>) or restart crmd.  A mistake here stops the
-- load with an error naming the setting; the running set stays.
---------------------------------------------------------------------------
local CONFIG = {
  -- The moves a ticket's state may make.  Anything else is refused with
  -- REJECTED "invalid ticket transition: FROM -> TO ...".
  transitions = {
    new         = {"assigned"},
    assigned    = {"in_progress"},
    in_progress = {"resolved"},
    resolved    = {"closed", "in_progress", "assigned"},   -- the last two reopen
    closed      = {"in_progress", "assigned"},             -- reopen
  },
  -- A move out of one of these states into an open state is a reopen
  -- (reopened_count += 1, resolved_at and closed_at removed).
  reopen_from = {"resolved", "closed"},
  -- States in which the SLA clock runs and the ticket counts toward its
  -- agent's load (agents.open_tickets).
  open_states = {"new", "assigned", "in_progress"},
  -- States a ticket may be created in (an import of old tickets may add
  -- "closed" here; such tickets get no SLA timer).
  create_states = {"new"},

  assignment = {
    enabled = true,
    strategy = "least_loaded",  -- "least_loaded" (fewest open tickets) or "round_robin"
    -- A ticket without a team gets one from its category (nil: no team).
    team_by_category = {billing = "billing", technical = "technical"},
    -- No active agent with capacity in the ticket's team: try every team?
    team_fallback = false,
    -- An assignee given by hand must be an agents record id.
    assignee_must_be_agent = true,
  },

  sla = {
    -- Business hours from the ticket's creation to its resolution deadline.
    hours = {urgent = 4, high = 8, normal = 24, low = 72},
    -- Priority changed on an open ticket: the new deadline counts from
    -- "now" (the change) or "created" (the ticket's creation).
    recompute_from = "now",
    -- A reopened ticket gets a new deadline from the reopen.
    restart_on_reopen = true,
  },

  escalation = {
    -- Level 1 fires at the deadline; each further entry is another level,
    -- that many business hours after the deadline.  {} : no escalation.
    after_hours = {0, 8},
    -- Tag added to an escalated ticket (nil: none).
    tag = "sla_breached",
  },

  -- The working calendar the SLA hours are counted on.
  calendar = {
    utc_offset_minutes = 60,   -- standard time of the service desk (60 = CET)
    dst = "eu",                -- daylight saving: "none", "eu" (last Sun Mar..last Sun Oct) or "us"
    -- Opening hours per weekday, local time; pairs of from/to ("09:00",
    -- "12:30", "13:30", "17:00" is a day with a lunch break).  A day left
    -- out is closed.
    hours = {
      mon = {"09:00", "17:00"},
      tue = {"09:00", "17:00"},
      wed = {"09:00", "17:00"},
      thu = {"09:00", "17:00"},
      fri = {"09:00", "17:00"},
    },
    -- Closed days: "YYYY-MM-DD" once, "MM-DD" every year.
    holidays = {"01-01", "05-01", "12-24", "12-25", "12-26", "12-31",
                "2026-04-03", "2026-04-06", "2026-05-14", "2026-05-25",
                "2027-03-26", "2027-03-29", "2027-05-06", "2027-05-17"},
  },

  survey = {
    on_close = true,     -- a survey record when a ticket is closed
    kind = "csat",
  },

  -- contacts.extra.tickets = {open =, total =, last_at =} kept current.
  contact_summary = true,

  -- tickets.history returns at most this many tickets (newest first).
  history_max = 5000,
}
---------------------------------------------------------------------------
-- end of configuration
---------------------------------------------------------------------------

local TIMER = "complaints.sla"
local DAY = 86400000
local HOUR = 3600000
local WEEKDAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

-- ---- calendar arithmetic (pure: no crm.* calls) -------------------------

-- Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function weekday(z) return (z + 3) % 7 + 1 end   -- 1 = Monday .. 7 = Sunday

local function nth_sunday(y, m, n)                       -- n = -1: the last one
  if n < 0 then
    local last = days_from_civil(m == 12 and y + 1 or y, m == 12 and 1 or m + 1, 1) - 1
    return last - (weekday(last) % 7)
  end
  local first = days_from_civil(y, m, 1)
  return first + (7 - weekday(first)) % 7 + 7 * (n - 1)
end

local function parse_hhmm(s, where)
  local h, m = tostring(s):match("^(%d%d?):(%d%d)$")
  h, m = tonumber(h), tonumber(m)
  if not h or m > 59 or h * 60 + m > 24 * 60 then
    error(("calendar.%s: %q is not a time HH:MM (00:00 to 24:00)"):format(where, tostring(s)), 0)
  end
  return (h * 60 + m) * 60000
end

-- The calendar table made ready for arithmetic (checked; errors name the setting).
local function compile_calendar(cal)
  local c = {week = {}, once = {}, yearly = {}, any = false,
             base = math.floor((cal.utc_offset_minutes or 0) * 60000), dst = cal.dst or "none"}
  if c.dst ~= "none" and c.dst ~= "eu" and c.dst ~= "us" then
    error(("calendar.dst: %q is not none, eu or us"):format(tostring(c.dst)), 0)
  end
  for name in pairs(cal.hours or {}) do
    local known = false
    for _, w in ipairs(WEEKDAYS) do known = known or w == name end
    if not known then error(("calendar.hours: %q is not a weekday (mon..sun)"):format(tostring(name)), 0) end
  end
  for i, name in ipairs(WEEKDAYS) do
    local spec, ivs = (cal.hours or {})[name] or {}, {}
    if #spec % 2 ~= 0 then error(("calendar.hours.%s: times come in from/to pairs"):format(name), 0) end
    for k = 1, #spec, 2 do
      local s = parse_hhmm(spec[k], "hours." .. name)
      local e = parse_hhmm(spec[k + 1], "hours." .. name)
      if e <= s or (#ivs > 0 and s < ivs[#ivs][2]) then
        error(("calendar.hours.%s: %s-%s must be after the previous period and end after it starts")
              :format(name, spec[k], spec[k + 1]), 0)
      end
      ivs[#ivs + 1] = {s, e}
      c.any = true
    end
    c.week[i] = ivs
  end
  for _, h in ipairs(cal.holidays or {}) do
    local y, m, d = tostring(h):match("^(%d%d%d%d)-(%d%d)-(%d%d)$")
    if y then
      c.once[days_from_civil(tonumber(y), tonumber(m), tonumber(d))] = true
    else
      m, d = tostring(h):match("^(%d%d)-(%d%d)$")
      if not m then error(("calendar.holidays: %q is not YYYY-MM-DD or MM-DD"):format(tostring(h)), 0) end
      c.yearly[tonumber(m) * 100 + tonumber(d)] = true
    end
  end
  if not c.any then error("calendar.hours: no working hours on any day", 0) end
  return c
end

-- The UTC offset (ms) in force on local day z.  The DST switch is taken at
-- the start of the switching Sunday (it happens at night, outside hours).
local function offset_on(c, z)
  if c.dst == "none" then return c.base end
  local y = civil_from_days(z)
  local from, to
  if c.dst == "eu" then
    from, to = nth_sunday(y, 3, -1), nth_sunday(y, 10, -1)
  else
    from, to = nth_sunday(y, 3, 2), nth_sunday(y, 11, 1)
  end
  if z >= from and z < to then return c.base + HOUR end
  return c.base
end

-- The local day (days since 1970-01-01) of a UTC time, and its offset.
local function local_day(c, utc)
  local off = c.base
  local z = (utc + off) // DAY
  off = offset_on(c, z)
  z = (utc + off) // DAY
  return z, offset_on(c, z)
end

local function is_holiday(c, z)
  if c.once[z] then return true end
  local _, m, d = civil_from_days(z)
  return c.yearly[m * 100 + d] == true
end

-- business_add(c, from_ms, hours) -> the UTC ms at which `hours` working
-- hours have passed since from_ms on calendar c.  From outside opening
-- hours, the count starts at the next opening.  Pure.
local function business_add(c, from, hours)
  local remaining = math.floor(hours * HOUR + 0.5)
  local z, off = local_day(c, from)
  local t = from + off - z * DAY           -- ms since local midnight
  for _ = 1, 3700 do                        -- ten years of calendar at most
    if not is_holiday(c, z) then
      for _, iv in ipairs(c.week[weekday(z)]) do
        local s = math.max(iv[1], t)
        if s < iv[2] then
          if remaining <= iv[2] - s then
            return z * DAY + s + remaining - offset_on(c, z)
          end
          remaining = remaining - (iv[2] - s)
        end
      end
    end
    z, t = z + 1, 0
  end
  error("calendar: no working time within ten years", 0)
end

-- "2026-11-23 09:00 +01:00": a UTC time as the service desk's local time.
local function local_text(c, utc)
  local z, off = local_day(c, utc)
  local y, m, d = civil_from_days(z)
  local msd = utc + off - z * DAY
  local sign = off < 0 and "-" or "+"
  local aoff = math.abs(off) // 60000
  return ("%04d-%02d-%02d %02d:%02d %s%02d:%02d"):format(y, m, d, msd // HOUR, msd % HOUR // 60000,
                                                          sign, aoff // 60, aoff % 60)
end

-- ---- configuration checked at load ---------------------------------------

local CAL = compile_calendar(CONFIG.calendar)
local OPEN = set_of(CONFIG.open_states)
local REOPEN_FROM = set_of(CONFIG.reopen_from)
local CREATE_STATES = set_of(CONFIG.create_states)
local ALLOWED = {}
for from, tos in pairs(CONFIG.transitions) do ALLOWED[from] = set_of(tos) end
do
  local s = CONFIG.assignment.strategy
  if s ~= "least_loaded" and s ~= "round_robin" then
    error(("assignment.strategy: %q is not least_loaded or round_robin"):format(tostring(s)), 0)
  end
  local r = CONFIG.sla.recompute_from
  if r ~= "now" and r ~= "created" then
    error(("sla.recompute_from: %q is not now or created"):format(tostring(r)), 0)
  end
  for p, h in pairs(CONFIG.sla.hours) do
    if type(h) ~= "number" or h < 0 then error(("sla.hours.%s must be a number >= 0"):format(p), 0) end
  end
  for i, h in ipairs(CONFIG.escalation.after_hours) do
    if type(h) ~= "number" or h < 0 then error(("escalation.after_hours[%d] must be a number >= 0"):format(i), 0) end
  end
end

local function sla_hours(priority)
  local h = CONFIG.sla.hours[priority or "normal"] or CONFIG.sla.hours.normal
  if not h then crm.reject(("no SLA hours for priority %s"):format(tostring(priority))) end
  return h
end

-- ---- agents ---------------------------------------------------------------

-- Is agent a a better pick than agent b?
local function better(a, b)
  if not b then return true end
  if CONFIG.assignment.strategy == "least_loaded" then
    local la, lb = a.open_tickets or 0, b.open_tickets or 0
    if la ~= lb then return la < lb end
  end
  local ra, rb = a.round_robin_seq or 0, b.round_robin_seq or 0
  if ra ~= rb then return ra < rb end
  return a.id < b.id
end

local function pick_in(team)
  local where = {active = true}
  if team then where.team = team end
  local best, top, after = nil, 0, nil
  repeat
    local page = crm.query("agents", where, {limit = 1000, after = after})
    for _, a in ipairs(page.records) do
      top = math.max(top, a.round_robin_seq or 0)
      if not (a.max_open and (a.open_tickets or 0) >= a.max_open) and better(a, best) then
        best = a
      end
    end
    after = page.next
  until not after
  return best, top
end

-- Chooses an agent for a ticket of this team and takes its turn; nil if none.
local function assign_agent(team)
  local best, top = pick_in(team)
  if not best and team and CONFIG.assignment.team_fallback then best, top = pick_in(nil) end
  if not best then return nil end
  -- the turn counter: the next round-robin pick is the agent waiting longest
  crm.update("agents", best.id, {round_robin_seq = top + 1, last_assigned_at = crm.now(),
                                 assigned_total = (best.assigned_total or 0) + 1})
  return best.id
end

-- The agent whose load a ticket counts toward, or nil.
local function load_of(rec)
  if rec and rec.assignee and OPEN[rec.state] then return rec.assignee end
  return nil
end

local function adjust_load(agent_id, delta)
  local a = crm.get("agents", agent_id)
  if not a then return end
  crm.update("agents", agent_id, {open_tickets = math.max(0, (a.open_tickets or 0) + delta)})
end

local function move_load(prev, rec)
  local a, b = load_of(prev), load_of(rec)
  if a == b then return end
  if a then adjust_load(a, -1) end
  if b then adjust_load(b, 1) end
end

local function check_assignee(rec, prev)
  if not rec.assignee or (prev and prev.assignee == rec.assignee) then return end
  if CONFIG.assignment.assignee_must_be_agent and not crm.get("agents", rec.assignee) then
    crm.reject(("assignee %s is not an agent (agents collection)"):format(rec.assignee))
  end
end

-- ---- SLA timers -------------------------------------------------------------

-- When escalation level `stage` fires for a ticket due at `due`.
local function stage_at(due, stage)
  local h = CONFIG.escalation.after_hours[stage]
  if h == 0 then return due end
  return business_add(CAL, due, h)
end

local function schedule_escalation(id, at, stage, due)
  local secs = math.max(0, (at - crm.now()) / 1000)
  crm.schedule(secs, TIMER, {ticket = id, stage = stage, due = due}, {key = id})
end

-- Sets rec.sla_due_at from `from` and arms the level-1 timer.
local function start_sla(id, rec, from)
  rec.sla_due_at = business_add(CAL, from, sla_hours(rec.priority))
  if #CONFIG.escalation.after_hours > 0 then
    schedule_escalation(id, stage_at(rec.sla_due_at, 1), 1, rec.sla_due_at)
  end
end

local function stop_sla(id)
  crm.cancel(TIMER, id)
end

crm.on_timer(TIMER, function(p)
  local t = crm.get("tickets", p.ticket)
  if not t or not OPEN[t.state] then return end      -- resolved (or gone) in time
  if t.sla_due_at ~= p.due then return end           -- the deadline moved since
  local patch = {escalation_level = (t.escalation_level or 0) + 1, escalated_at = crm.now()}
  local tag = CONFIG.escalation.tag
  if tag then
    local tags, has = crm.array(), false
    for _, v in ipairs(t.tags or {}) do tags[#tags + 1] = v; has = has or v == tag end
    if not has then tags[#tags + 1] = tag; patch.tags = tags end
  end
  crm.update("tickets", t.id, patch)
  crm.log("warn", "ticket", t.id, "missed its SLA (due", local_text(CAL, t.sla_due_at) ..
          "); escalation level", patch.escalation_level)
  if CONFIG.escalation.after_hours[p.stage + 1] then
    schedule_escalation(t.id, stage_at(p.due, p.stage + 1), p.stage + 1, p.due)
  end
end)

-- ---- the contact's ticket summary (before-hooks: exact, in the write's txn) ---

-- The contact's summary counted from its stored tickets (every page),
-- leaving out ticket `exclude`.
local function count_contact(contact_id, exclude)
  local open, total, last, after = 0, 0, nil, nil
  repeat
    local page = crm.query("tickets", {contact = contact_id}, {limit = 1000, after = after})
    for _, t in ipairs(page.records) do
      if t.id ~= exclude then
        total = total + 1
        if OPEN[t.state] then open = open + 1 end
        if not last or t._created > last then last = t._created end
      end
    end
    after = page.next
  until not after
  return {open = open, total = total, last_at = last}
end

-- contacts.extra.tickets moved by one ticket's change: from the stored
-- summary, or from a count of the stored tickets when there is none yet
-- (or `exclude` asks for a recount without that ticket).
local function refresh_contact(contact_id, d_total, d_open, created, exclude)
  if not CONFIG.contact_summary then return end
  local c = contact_id and crm.get("contacts", contact_id)
  if not c then return end
  local extra = c.extra or {}
  local old, base = extra.tickets, nil
  if not exclude and type(old) == "table" and math.type(old.total) == "integer"
     and math.type(old.open) == "integer" then
    base = old
  else
    base = count_contact(contact_id, exclude)
  end
  local new = {total = math.max(0, base.total + d_total), open = math.max(0, base.open + d_open),
               last_at = base.last_at}
  if created and (not new.last_at or created > new.last_at) then new.last_at = created end
  if type(old) == "table" and old.open == new.open and old.total == new.total
     and old.last_at == new.last_at then
    return
  end
  extra.tickets = new
  crm.update("contacts", contact_id, {extra = extra})
end

local function open_n(rec) return (rec and OPEN[rec.state]) and 1 or 0 end

local function summary_on_update(ev)
  local r, p = ev.record, ev.prev
  if r.contact ~= p.contact then
    refresh_contact(p.contact, 0, 0, nil, ev.id)
    refresh_contact(r.contact, 1, open_n(r), p._created)
  elseif open_n(r) ~= open_n(p) then
    refresh_contact(r.contact, 0, open_n(r) - open_n(p))
  end
end

-- ---- the state machine (before-hooks: inside the write's transaction) ------

local function allowed_list(from)
  local out = {}
  for _, to in ipairs(CONFIG.transitions[from] or {}) do out[#out + 1] = to end
  return #out > 0 and table.concat(out, ", ") or "nowhere"
end

crm.on("tickets.create", function(ev)
  local r, now = ev.record, crm.now()
  if not CREATE_STATES[r.state] then
    crm.reject(("a ticket cannot be created in state %s (allowed: %s)")
               :format(tostring(r.state), table.concat(CONFIG.create_states, ", ")))
  end
  if not r.team and CONFIG.assignment.team_by_category[r.category or ""] then
    r.team = CONFIG.assignment.team_by_category[r.category]
  end
  check_assignee(r, nil)
  if r.state == "new" and ALLOWED.new and ALLOWED.new.assigned then
    if not r.assignee and CONFIG.assignment.enabled then r.assignee = assign_agent(r.team) end
    if r.assignee then r.state = "assigned" end
  end
  if r.state == "resolved" or r.state == "closed" then r.resolved_at = r.resolved_at or now end
  if r.state == "closed" then r.closed_at = r.closed_at or now end
  move_load(nil, r)
  if OPEN[r.state] then start_sla(ev.id, r, now) end
  refresh_contact(r.contact, 1, open_n(r), now)
end, {phase = "before"})

crm.on("tickets.update", function(ev)
  local r, p, now = ev.record, ev.prev, crm.now()
  local from, to = p.state, r.state
  local reopened = false
  if from ~= to then
    if not (ALLOWED[from] and ALLOWED[from][to]) then
      crm.reject(("invalid ticket transition: %s -> %s (from %s a ticket may go to %s)")
                 :format(tostring(from), tostring(to), tostring(from), allowed_list(from)))
    end
    reopened = REOPEN_FROM[from] and not REOPEN_FROM[to]
    if reopened then
      r.reopened_count = (p.reopened_count or 0) + 1
      r.resolved_at, r.closed_at = nil, nil
    end
    if to == "assigned" and not r.assignee and CONFIG.assignment.enabled then
      r.assignee = assign_agent(r.team)
    end
    if (to == "assigned" or to == "in_progress") and not r.assignee then
      crm.reject(("a ticket in state %s needs an assignee (no active agent available)"):format(to))
    end
    if to == "in_progress" and not r.first_response_at then r.first_response_at = now end
    if to == "resolved" then r.resolved_at = now end
    if to == "closed" then r.closed_at = now; r.resolved_at = r.resolved_at or now end
  end
  check_assignee(r, p)
  move_load(p, r)
  -- the SLA clock
  if OPEN[to] then
    if not OPEN[from] then
      if reopened and not CONFIG.sla.restart_on_reopen and r.sla_due_at then
        schedule_escalation(ev.id, stage_at(r.sla_due_at, 1), 1, r.sla_due_at)
      else
        start_sla(ev.id, r, now)
      end
    elseif r.priority ~= p.priority then
      start_sla(ev.id, r, CONFIG.sla.recompute_from == "created" and (p._created or now) or now)
    elseif r.sla_due_at ~= p.sla_due_at then
      -- set by hand: the timer follows the new deadline
      if r.sla_due_at then schedule_escalation(ev.id, stage_at(r.sla_due_at, 1), 1, r.sla_due_at)
      else stop_sla(ev.id) end
    end
  elseif OPEN[from] then
    stop_sla(ev.id)
  end
  summary_on_update(ev)
end, {phase = "before"})

crm.on("tickets.delete", function(ev)
  move_load(ev.prev, nil)
  stop_sla(ev.id)
  refresh_contact(ev.prev.contact, 0, 0, nil, ev.id)
end, {phase = "before"})

-- ---- after the change is stored: the survey ------------------------------

crm.on("tickets.update", function(ev)
  local r, p = ev.record, ev.prev
  if CONFIG.survey.on_close and r.state == "closed" and p.state ~= "closed" then
    crm.create("surveys", {contact = r.contact, ticket = ev.id, kind = CONFIG.survey.kind,
                           state = "sent", sent_at = crm.now()})
  end
end, {name = "complaints.survey"})

-- ---- surveys: the scale of each kind, and a CSAT answer on its ticket ------

-- The schema allows 0..10 (NPS); a CSAT score is 1..5.
local SCALE = {csat = {1, 5}, nps = {0, 10}}

local function check_score(ev)
  local r = ev.record
  local s = SCALE[r.kind]
  if r.score ~= nil and s and (r.score < s[1] or r.score > s[2]) then
    crm.reject(("score: a %s score is %d to %d, got %d"):format(r.kind, s[1], s[2], r.score))
  end
end
crm.on("surveys.create", check_score, {phase = "before"})
crm.on("surveys.update", check_score, {phase = "before"})

-- An answered CSAT survey of a ticket fills the ticket's satisfaction.
local function survey_answered(ev)
  local r = ev.record
  if r.kind == "csat" and r.state == "answered" and r.score and r.ticket and
     not (ev.prev and ev.prev.state == "answered" and ev.prev.score == r.score) then
    local t = crm.get("tickets", r.ticket)
    if t and t.satisfaction ~= r.score then
      crm.update("tickets", r.ticket, {satisfaction = r.score})
    end
  end
end
crm.on("surveys.create", survey_answered, {name = "complaints.survey_answered_new"})
crm.on("surveys.update", survey_answered, {name = "complaints.survey_answered"})

-- ---- methods ------------------------------------------------------------------

-- tickets.history {contact} -> {contact, total, open, tickets = [...] newest first}
crm.method("tickets.history", function(params)
  local contact = params and params.contact
  if type(contact) ~= "string" then crm.reject("tickets.history needs {contact = id}") end
  local out, open, after, truncated = crm.array(), 0, nil, false
  repeat
    local page = crm.query("tickets", {contact = contact}, {order_by = "-_created", limit = 1000,
                                                             after = after})
    for _, t in ipairs(page.records) do
      if #out >= CONFIG.history_max then truncated = true; break end
      out[#out + 1] = t
      if OPEN[t.state] then open = open + 1 end
    end
    after = page.next
  until not after or truncated
  return {contact = contact, total = #out, open = open, tickets = out, truncated = truncated}
end)

-- tickets.sla_due {priority | hours, from} -> {due, due_local, from, from_local, hours}
-- (from defaults to the server clock's now)
-- The business-hours arithmetic on the configured calendar; changes nothing.
crm.method("tickets.sla_due", function(params)
  params = params or {}
  local from = params.from or crm.now()
  if math.type(from) ~= "integer" then crm.reject("from must be ms since the epoch (an integer)") end
  local hours = params.hours
  if hours == nil then
    hours = CONFIG.sla.hours[params.priority or "normal"]
    if not hours then crm.reject(("no SLA hours for priority %s"):format(tostring(params.priority))) end
  end
  if type(hours) ~= "number" or hours < 0 or hours > 100000 then
    crm.reject("hours must be a number from 0 to 100000")
  end
  local due = business_add(CAL, from, hours)
  return {due = due, due_local = local_text(CAL, due), from = from,
          from_local = local_text(CAL, from), hours = hours}
end)

-- tickets.recount_agents {} -> {agents = n}: recomputes agents.open_tickets
-- from the tickets (after an import that bypassed the workflow).
crm.method("tickets.recount_agents", function()
  local n, after = 0, nil
  repeat
    local page = crm.query("agents", nil, {limit = 200, after = after})
    for _, a in ipairs(page.records) do
      local open, tafter = 0, nil
      repeat
        local tp = crm.query("tickets", {assignee = a.id, state = {["in"] = CONFIG.open_states}},
                             {limit = 1000, after = tafter})
        open = open + #tp.records
        tafter = tp.next
      until not tafter
      if open ~= (a.open_tickets or 0) then crm.update("agents", a.id, {open_tickets = open}) end
      n = n + 1
    end
    after = page.next
  until not after
  return {agents = n}
end)
