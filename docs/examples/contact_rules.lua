-- contact_rules.lua: before-hooks that tidy and check contacts as they are
-- written.  They run inside the write's transaction: changing ev.record
-- changes what is stored; crm.reject refuses the write (REJECTED).

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function tidy(ev)
  local r = ev.record
  if r.name then r.name = trim(r.name) end
  if r.email then
    r.email = trim(r.email):lower()
    if not r.email:find("^[^@%s]+@[^@%s]+%.[^@%s]+$") then
      crm.reject("email " .. r.email .. " does not look like an address")
    end
  end
end

crm.on("contacts.create", tidy, {phase = "before"})
crm.on("contacts.update", tidy, {phase = "before"})
