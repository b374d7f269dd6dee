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
-- timer): pass 1 pages through the contacts collecting the distributions,
-- pass 2 pages through them again writing the scores; one page per timer
-- call, so no call holds the server for long.

--------------------------------------------------------------------------
-- CONFIG: a consultant edits this table, then `kill -HUP` the server.
--------------------------------------------------------------------------
local CONFIG = {
  -- contacts per timer call (each call reads, and in pass 2 may write, a page)
  page = 200,
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
  -- When the clv plugin (BG/NBD + Gamma-Gamma, plugins/clv) has a fitted
  -- model (value_models/vm_bgnbd_gg with status "ready"), it writes the
  -- contacts' clv and churn_risk, and this script leaves those two fields
  -- alone (it still uses its own CLV below to rank value classes).  Set to
  -- false to have this script write them regardless.
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

local function start_job(reason)
  local now = crm.now()
  JOB = {id = tostring(now) .. "-" .. tostring(math.random(1, 1 << 30)), now = now, reason = reason,
         R = {}, F = {}, M = {}, V = {}, total = 0, customers = 0, contacts = 0,
         pages = 0, updated = 0, cpu_s = 0, max_page_s = 0, started_clock = os.clock()}
  local model = CONFIG.defer_to_model and crm.get("value_models", "vm_bgnbd_gg")
  JOB.model_owns = model ~= nil and model.status == "ready"
  crm.schedule(0, "page", {job = JOB.id, pass = 1}, {key = "job"})
  return JOB
end

local function finish_pass1(job)
  for _, a in ipairs({job.R, job.F, job.M, job.V}) do table.sort(a) end
  -- ABC thresholds: walk the spend from the largest down
  local desc = job.M
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
  local clv = clv_of(c, now)
  local s = {
    rfm_r = score(job.R, c.last_order_at),
    rfm_f = score(job.F, c.order_count),
    rfm_m = score(job.M, m),
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

crm.on_timer("page", function(p)
  local t0 = os.clock()
  local job = JOB
  if not job or job.id ~= p.job then
    -- the collected distribution lived in the state that started the job
    -- (a restart or a reload lost it): start over
    crm.log("warn", "value job", p.job, "lost its state; starting again")
    start_job("restarted")
    return
  end
  local page = crm.query("contacts", nil, {limit = CONFIG.page, after = p.after})
  if p.pass == 1 then
    for _, c in ipairs(page.records) do
      job.contacts = job.contacts + 1
      if is_customer(c) then
        local n = #job.R + 1
        job.R[n] = c.last_order_at
        job.F[n] = c.order_count
        job.M[n] = c.total_spent or 0
        job.V[n] = clv_of(c, job.now)
        job.total = job.total + (c.total_spent or 0)
      end
    end
  else
    for _, c in ipairs(page.records) do
      local s = scores_of(job, c)
      local patch, changed = {}, false
      for _, f in ipairs(FIELDS) do
        local v = s[f]
        if job.model_owns and (f == "clv" or f == "churn_risk") then
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
  end
  job.pages = job.pages + 1
  if page.next then
    crm.schedule(0, "page", {job = job.id, pass = p.pass, after = page.next}, {key = "job"})
  elseif p.pass == 1 then
    job.customers = #job.R
    finish_pass1(job)
    crm.schedule(0, "page", {job = job.id, pass = 2}, {key = "job"})
  else
    LAST = {job = job.id, reason = job.reason, now = job.now, contacts = job.contacts // 1,
            customers = job.customers, revenue = job.total, updated = job.updated,
            pages = job.pages, cpu_s = job.cpu_s, max_page_s = job.max_page_s,
            elapsed_s = os.clock() - job.started_clock, finished_at = crm.now()}
    JOB = nil
    crm.log("info", "value job done:", LAST.customers, "customers,", LAST.updated, "updated,",
            LAST.pages, "pages")
  end
  local dt = os.clock() - t0
  job.cpu_s = job.cpu_s + dt
  if dt > job.max_page_s then job.max_page_s = dt end
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
