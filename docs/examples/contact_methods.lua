-- contact_methods.lua: functions clients call with the `call` op.
-- fn(params, ctx): ctx.user is the caller's token id, ctx.role its role.
-- The return value is the reply's result; crm.reject refuses the call.

crm.method("contacts.touch", function(params, ctx)
  if ctx.role ~= "sales" and ctx.role ~= "service_agent" then
    crm.reject("only sales and service agents may touch contacts")
  end
  local c = crm.update("contacts", params.id, {last_interaction_at = crm.now()})
  return {id = c.id, last_interaction_at = c.last_interaction_at, by = ctx.user}
end)

-- Records a note, refusing a stale edit: if_rev makes the update CONFLICT
-- when someone changed the contact since the caller read it.
crm.method("contacts.note", function(params)
  local ok, err = pcall(crm.update, "contacts", params.id,
                        {notes = params.text}, {if_rev = params.rev})
  if not ok then
    if err:match("^CONFLICT:") then
      return {saved = false, reason = "changed meanwhile"}
    end
    error(err, 0)                               -- anything else fails the call
  end
  return {saved = true}
end)
