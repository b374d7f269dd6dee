-- bench_peers: the hook of the create workload.  Every new contact earns 10
-- loyalty points on its own account, in the same transaction as the contact
-- (a before-hook: refused or failed, both are undone).  PostgreSQL's AFTER
-- INSERT trigger, Redis's function and Tarantool's on_replace trigger do the
-- same upsert.
crm.on("contacts.create", function(ev)
  local a = crm.get("loyalty", ev.id)
  if a then
    crm.update("loyalty", ev.id, {points = a.points + 10})
  else
    crm.create("loyalty", {id = ev.id, points = 10})
  end
end, {phase = "before"})
