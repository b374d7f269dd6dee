-- bench_peers: crmd's after-hook.  Every new contact gets one activity record,
-- written after the create is durable: the hook reads the change feed through
-- its own durable cursor (exactly once) on crmd's writer thread, and its write
-- commits with the cursor's step.  The peers have no equivalent; the report
-- gives this hook's lag (crmd_after_hook_lag in /metrics) under the create
-- table, as crmd's own derived-data path, not as a comparison.
crm.on("contacts.create", function(ev)
  crm.create("activity", {contact = ev.id, at = crm.now()})
end, {name = "activity"})
