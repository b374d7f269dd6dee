-- ticket_sla.lua: an after-hook and a durable timer.  A new ticket gets an
-- SLA deadline from its priority; when the deadline passes and the ticket
-- is still open, it is escalated.  The timer is keyed by the ticket id, so
-- scheduling it again replaces it, and it survives a restart.

local SLA_SECONDS = {urgent = 3600, high = 4 * 3600, normal = 24 * 3600, low = 72 * 3600}

crm.on("tickets.create", function(ev)
  local secs = SLA_SECONDS[ev.record.priority] or SLA_SECONDS.normal
  crm.update("tickets", ev.id, {sla_due_at = crm.now() + secs * 1000})
  crm.schedule(secs, "sla_check", {ticket = ev.id}, {key = ev.id})
end, {name = "sla_deadline"})

crm.on_timer("sla_check", function(payload)
  local t = crm.get("tickets", payload.ticket)
  if not t or t.state == "resolved" or t.state == "closed" then
    return                                  -- deleted or done in time
  end
  crm.update("tickets", t.id, {escalation_level = t.escalation_level + 1,
                               escalated_at = crm.now()})
  crm.log("warn", "ticket", t.id, "missed its SLA; escalation level", t.escalation_level + 1)
end)
