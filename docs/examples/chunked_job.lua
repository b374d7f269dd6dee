-- chunked_job.lua: long work in pages.  One call may not hold the server
-- beyond its budget (1 s by default), so a job over many records handles
-- one page per timer call and schedules the next page with the query's
-- cursor.  Each page commits on its own; the timer is durable, so a
-- restart resumes the job where it stopped.

local PAGE = 2   -- tiny for the example's test; 200-500 is a good size

crm.method("jobs.tag_all", function(params)
  crm.schedule(0, "jobs.tag_page", {tag = params.tag})
  return {started = true}
end)

crm.on_timer("jobs.tag_page", function(job)
  local page = crm.query("contacts", nil, {limit = PAGE, after = job.after})
  for _, c in ipairs(page.records) do
    local tags = c.tags or crm.array()
    local has = false
    for _, t in ipairs(tags) do has = has or t == job.tag end
    if not has then
      table.insert(tags, job.tag)
      crm.update("contacts", c.id, {tags = tags})
    end
  end
  if page.next then
    crm.schedule(0, "jobs.tag_page", {tag = job.tag, after = page.next})
  else
    crm.log("info", "jobs.tag_all done:", job.tag)
  end
end)
