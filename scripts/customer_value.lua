-- customer_value.lua -- customer value analytics (docs/features/customer_value.md)
--
-- For every customer (a contact with at least one counted order) it stores
-- on the contact: rfm_r, rfm_f, rfm_m (quintile scores 1..5 over the
-- customer base), abc_class (Pareto by revenue), clv (estimated lifetime
-- value, minor units), value_class and churn_risk (0..1).  Non-customers get
-- these fields removed.  It reads order_count, total_spent, first_order_at
-- and last_order_at, which scripts/lifecycle.lua keeps on each contact.
--
-- Recomputed by a chunked job (method value.recompute, and a daily durable
-- timer): with an RFM window, pass 0 pages through the window's orders
-- summing frequency and spend per contact; pass 1 pages through the contacts
-- collecting the distributions; the sort step sorts one distribution per
-- call; pass 2 pages through the contacts again writing the scores.  One
-- page per timer call, the page shrinking when a call runs over its time
-- budget, so no call holds the server for long.

--------------------------------------------------------------------------
-- CONFIG: a consultant edits this table, then `kill -HUP` the server.
--------------------------------------------------------------------------
local CONFIG = {
  -- contacts (or orders) per timer call at most (each call reads, and in
  -- pass 2 may write, a page)
  page = 200,
  -- time one timer call should stay under (wall time, crm.clock): a page
  -- that took longer makes the next one smaller (down to min_page), a quick
  -- one lets it grow back (at most doubling); each pass starts at page / 4
  page_budget_ms = 15,
  min_page = 10,

  -- RFM window: frequency and monetary count only the orders of the last
  -- rfm_window_days (by ordered_at, counted statuses only); recency is the
  -- last counted order whenever it was.  nil: the whole history (the
  -- order_count and total_spent lifecycle.lua keeps).  ABC, CLV and churn
  -- risk always use the whole history.
  rfm_window_days = 365,
  -- order statuses that count; keep equal to lifecycle.lua's counted_statuses
  counted_statuses = {"pending", "paid", "shipped", "completed"},
  -- hour of the day (UTC, server clock) of the daily recomputation
  daily_at_hour = 3,

  -- ABC: A = the customers making the first 80 % of revenue (largest
  -- first), B = the next 15 %, C = the rest
  abc_a_share = 0.80,
  abc_b_share = 0.15,

  -- CLV = (average order value * gross_margin - cost_per_order)
  --       * orders per year * expected_lifetime_years
  -- orders per year = order_count / max(tenure in years, min_tenure_days/365),
  -- tenure = now - first order
  -- One CLV per contact.  Once the clv plugin (BG/NBD + Gamma-Gamma,
  -- plugins/clv) has written predictions (value_models/vm_bgnbd_gg has
  -- finished a fit, or is writing one, with writes_clv), the contacts' clv
  -- is the model's: this script never writes it again (also while a refit
  -- runs), and ranks value classes by that same stored clv (a customer the
  -- model has not seen yet counts as 0).  The same for churn_risk with
  -- writes_churn_risk.  Set to false to have this script own both fields
  -- (then set write_clv and write_churn_risk false in plugins/clv.json, or
  -- the two will overwrite each other).
  defer_to_model = true,

  gross_margin = 0.30,
  cost_per_order = 500,          -- minor units (5.00) to serve one order
  expected_lifetime_years = 3,
  min_tenure_days = 365,

  -- churn_risk: 0 while the time since the last order is within the
  -- customer's usual gap between orders, rising linearly to 1 at
  -- churn_gap_multiple times that gap.  The usual gap is
  -- (last order - first order) / (orders - 1); with one order it is
  -- default_gap_days.  Gaps are at least min_gap_days.
  churn_gap_multiple = 3,
  default_gap_days = 90,
  min_gap_days = 7,

  -- value classes (first rule that matches):
  --   below_zero     clv < 0
  --   most_valuable  rfm_m >= valuable_min_m and clv score >= valuable_min_clv_score
  --   most_growable  clv score >= growable_min_clv_score (not most valuable)
  --   maintain       everyone else
  -- (clv score: CLV quintile 1..5 over the customer base, as for RFM)
  valuable_min_m = 4,
  valuable_min_clv_score = 4,
  growable_min_clv_score = 4,
}
--------------------------------------------------------------------------

local DAY_MS = 86400 * 1000
local COUNTED = {}
for _, st in ipairs(CONFIG.counted_statuses) do COUNTED[st] = true end
local FIELDS = {"rfm_r", "rfm_f", "rfm_m", "abc_class", "clv", "value_class", "churn_risk"}

-- The running job (one at a time; lost on restart or reload, see page()).
local JOB = nil
local LAST = nil      -- summary of the last finished job
local armed = false   -- the daily timer was (re)armed by this state

local function is_customer(c)
  return (c.order_count or 0) > 0 and c.last_order_at ~= nil
end

local function clv_of(c, now)
  local n, spent = c.order_count, c.total_spent or 0
  local aov = spent / n
  local first = c.first_order_at or c.last_order_at
  local tenure_days = math.max((now - first) / DAY_MS, CONFIG.min_tenure_days)
  local per_year = n / (tenure_days / 365)
  local v = (aov * CONFIG.gross_margin - CONFIG.cost_per_order) * per_year * CONFIG.expected_lifetime_years
  return math.floor(v + 0.5)
end

-- The CLV this job ranks and writes by: the contact's stored one when the
-- model owns it (0 before the model has seen the contact), else ours.
local function clv_for(job, c)
  if job.model_owns then return c.clv or 0 end
  return clv_of(c, job.now)
end

local function churn_risk_of(c, now)
  local n = c.order_count
  local gap
  if n >= 2 and c.first_order_at then
    gap = (c.last_order_at - c.first_order_at) / DAY_MS / (n - 1)
  else
    gap = CONFIG.default_gap_days
  end
  gap = math.max(gap, CONFIG.min_gap_days)
  local ratio = math.max(0, now - c.last_order_at) / DAY_MS / gap
  local risk = (ratio - 1) / (CONFIG.churn_gap_multiple - 1)
  risk = math.min(1, math.max(0, risk))
  return math.floor(risk * 1000 + 0.5) / 1000
end

-- Number of values in sorted array a strictly less than v.
local function count_below(a, v)
  local lo, hi = 1, #a + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if a[mid] < v then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end

-- Quintile score 1..5: 1 + floor(5 * (values below v) / n).
local function score(a, v)
  local s = 1 + (5 * count_below(a, v)) // #a
  return math.min(5, s)
end

local function next_daily(now)
  local at = (now // DAY_MS) * DAY_MS + CONFIG.daily_at_hour * 3600 * 1000
  if at <= now then at = at + DAY_MS end
  return at
end

local function arm_daily()
  local now = crm.now()
  -- the same absolute due time each call, so re-arming never postpones it
  crm.schedule((next_daily(now) - now) / 1000, "daily", {}, {key = "daily"})
  armed = true
end

-- Whether the fitted model owns the contacts' clv, and churn_risk: once
-- it has written predictions, also while it refits (sticky).
local function model_owns()
  local model = CONFIG.defer_to_model and crm.get("value_models", "vm_bgnbd_gg")
  local written = model and (model.finished_at ~= nil or model.status == "writing")
  return (written and model.writes_clv ~= false) or false,
         (written and model.writes_churn_risk ~= false) or false
end

local function start_job(reason)
  local now = crm.now()
  JOB = {id = tostring(now) .. "-" .. tostring(math.random(1, 1 << 30)), now = now, reason = reason,
         R = {}, F = {}, M = {}, S = {}, V = {}, total = 0, customers = 0, contacts = 0,
         pages = 0, updated = 0, cpu_s = 0, max_page_s = 0, started_clock = crm.clock(),
         size = CONFIG.page, window_orders = 0}
  if CONFIG.rfm_window_days then
    JOB.since = now - CONFIG.rfm_window_days * DAY_MS
    JOB.WF, JOB.WM = {}, {}
  end
  JOB.model_owns, JOB.model_owns_churn = model_owns()
  crm.schedule(0, "page", {job = JOB.id, pass = JOB.since and 0 or 1}, {key = "job"})
  return JOB
end

-- The distributions sorted by the sort step, one per timer call (sorting
-- all of them at once held the loop for 130 ms at 80,000 customers).
local SORTED = {"R", "F", "M", "S", "V"}

local function finish_sort(job)
  -- ABC thresholds: walk the lifetime spend from the largest down
  local desc = job.S
  local cum, a_cut, b_cut = 0, nil, nil
  local a_goal = job.total * CONFIG.abc_a_share
  local b_goal = job.total * (CONFIG.abc_a_share + CONFIG.abc_b_share)
  for i = #desc, 1, -1 do
    cum = cum + desc[i]
    if not a_cut and cum >= a_goal then a_cut = desc[i] end
    if not b_cut and cum >= b_goal then b_cut = desc[i]; break end
  end
  job.a_cut, job.b_cut = a_cut, b_cut
end

local function scores_of(job, c)
  if not is_customer(c) then return {} end
  local now = job.now
  local m = c.total_spent or 0
  local clv = clv_for(job, c)
  local f, wm = c.order_count, m
  if job.since then f, wm = job.WF[c.id] or 0, job.WM[c.id] or 0 end
  local s = {
    rfm_r = score(job.R, c.last_order_at),
    rfm_f = score(job.F, f),
    rfm_m = score(job.M, wm),
    clv = clv,
    churn_risk = churn_risk_of(c, now),
  }
  if job.total > 0 and m > 0 and m >= job.a_cut then s.abc_class = "A"
  elseif job.total > 0 and m > 0 and m >= job.b_cut then s.abc_class = "B"
  else s.abc_class = "C" end
  local cs = score(job.V, clv)
  if clv < 0 then s.value_class = "below_zero"
  elseif s.rfm_m >= CONFIG.valuable_min_m and cs >= CONFIG.valuable_min_clv_score then s.value_class = "most_valuable"
  elseif cs >= CONFIG.growable_min_clv_score then s.value_class = "most_growable"
  else s.value_class = "maintain" end
  return s
end

-- Next page size: scaled so a call takes about page_budget_ms (wall time).
local function next_size(job, dt)
  local size = job.size
  if dt > 0 then
    size = math.floor(size * (CONFIG.page_budget_ms / 1000) / dt)
    size = math.min(size, job.size * 2)
  else
    size = job.size * 2
  end
  job.size = math.max(CONFIG.min_page, math.min(CONFIG.page, size))
end

-- Pass 0: the window's orders, frequency and spend per contact.
local function window_page(job, p)
  -- in ordered_at order, so each page is a walk of that index from the
  -- cursor (in id order every page would sort the whole window)
  local page = crm.query("orders", {ordered_at = {gte = job.since}},
                         {limit = job.size, after = p.after, order_by = "ordered_at"})
  for _, o in ipairs(page.records) do
    if o.contact and COUNTED[o.status or "pending"] then
      job.WF[o.contact] = (job.WF[o.contact] or 0) + 1
      job.WM[o.contact] = (job.WM[o.contact] or 0) + (o.amount or 0)
      job.window_orders = job.window_orders + 1
    end
  end
  return page
end

-- Pass 1: the contacts' distributions.
local function collect_page(job, p)
  local page = crm.query("contacts", nil, {limit = job.size, after = p.after})
  for _, c in ipairs(page.records) do
    job.contacts = job.contacts + 1
    if is_customer(c) then
      local n = #job.R + 1
      local spent = c.total_spent or 0
      job.R[n] = c.last_order_at
      if job.since then
        job.F[n] = job.WF[c.id] or 0
        job.M[n] = job.WM[c.id] or 0
      else
        job.F[n] = c.order_count
        job.M[n] = spent
      end
      job.S[n] = spent
      job.V[n] = clv_for(job, c)
      job.total = job.total + spent
    end
  end
  return page
end

-- Pass 2: scores written where they changed.
local function write_page(job, p)
  -- a fit that began writing since the job started owns them from now on
  local owns, owns_churn = model_owns()
  job.model_owns = job.model_owns or owns
  job.model_owns_churn = job.model_owns_churn or owns_churn
  local page = crm.query("contacts", nil, {limit = job.size, after = p.after})
  for _, c in ipairs(page.records) do
    local s = scores_of(job, c)
    local patch, changed = {}, false
    for _, f in ipairs(FIELDS) do
      local v = s[f]
      if (job.model_owns and f == "clv") or (job.model_owns_churn and f == "churn_risk") then
        v = c[f] -- the fitted model's
      end
      if v ~= c[f] then
        patch[f] = v == nil and crm.null or v
        changed = true
      end
    end
    if changed then
      crm.update("contacts", c.id, patch)
      job.updated = job.updated + 1
    end
  end
  return page
end

local function finish_job(job)
  LAST = {job = job.id, reason = job.reason, now = job.now, contacts = job.contacts // 1,
          customers = job.customers, revenue = job.total, updated = job.updated,
          pages = job.pages, cpu_s = job.cpu_s, max_page_s = job.max_page_s,
          window_days = CONFIG.rfm_window_days, window_orders = job.window_orders,
          elapsed_s = crm.clock() - job.started_clock, finished_at = crm.now()}
  JOB = nil
  crm.log("info", "value job done:", LAST.customers, "customers,", LAST.updated, "updated,",
          LAST.pages, "pages")
end

local function next_step(job, pass, extra)
  job.next_pass = pass
  local payload = {job = job.id, pass = pass}
  for k, v in pairs(extra or {}) do payload[k] = v end
  crm.schedule(0, "page", payload, {key = "job"})
end

-- Passes: 0 window orders, 1 collect, "sort" (p.sorted distributions done
-- so far), 2 write.
crm.on_timer("page", function(p)
  local t0, c0 = crm.clock(), os.clock()
  local job = JOB
  if not job or job.id ~= p.job then
    -- the collected distribution lived in the state that started the job
    -- (a restart or a reload lost it): start over
    crm.log("warn", "value job", p.job, "lost its state; starting again")
    start_job("restarted")
    return
  end
  if p.pass == "sort" then
    local k = (p.sorted or 0) + 1
    table.sort(job[SORTED[k]])
    if k < #SORTED then
      next_step(job, "sort", {sorted = k})
    else
      finish_sort(job)
      next_step(job, 2)
    end
  else
    local page
    if p.pass == 0 then page = window_page(job, p)
    elseif p.pass == 1 then page = collect_page(job, p)
    else page = write_page(job, p) end
    job.pages = job.pages + 1
    if page.next then
      next_step(job, p.pass, {after = page.next})
    elseif p.pass == 0 then
      next_step(job, 1)
    elseif p.pass == 1 then
      job.customers = #job.R
      next_step(job, "sort", {sorted = 0})
    else
      finish_job(job)
    end
  end
  -- wall time (crm.clock): a page that waits for the disk holds the writer as
  -- surely as one that computes
  local dt = crm.clock() - t0
  job.cpu_s = job.cpu_s + (os.clock() - c0)
  if dt > job.max_page_s then job.max_page_s = dt end
  if job.next_pass ~= p.pass then
    -- another pass reads (and writes) other things: start it small
    job.size = math.max(CONFIG.min_page, CONFIG.page // 4)
  elseif p.pass ~= "sort" then
    next_size(job, dt)
  end
  if LAST and LAST.job == job.id then LAST.cpu_s, LAST.max_page_s = job.cpu_s, job.max_page_s end
end)

crm.on_timer("daily", function()
  start_job("daily")
  arm_daily()
end)

-- The daily timer needs a transaction to be scheduled: the first order this
-- state sees (re)arms it, as does value.recompute.
crm.on("orders.create", function()
  if not armed then arm_daily() end
end, {name = "arm_daily"})

-- value.recompute {}: starts a recomputation (a running one is replaced).
crm.method("value.recompute", function()
  local job = start_job("method")
  if not armed then arm_daily() end
  return {job = job.id, now = job.now}
end)

-- value.status {}: the running job and the last finished one.
crm.method("value.status", function()
  local running = nil
  if JOB then
    running = {job = JOB.id, now = JOB.now, pages = JOB.pages, contacts = JOB.contacts}
  end
  return {running = running, last = LAST}
end)
