/*
 * log -- structured logs: one JSON object per line on stderr (issue 7).
 *
 *   {"ts":"2026-11-23T14:38:06.123Z","level":"info","event":"ready",
 *    "msg":"crmd 0.1.0 listening on 127.0.0.1:8420 ...","port":8420,...}
 *
 * ts (UTC, milliseconds), level and event come first, in that order; the
 * event's own fields follow at the top level.  Each line goes out in one
 * write, so lines from the loop and a plugin's worker thread never mix.
 * Never: a token's secret in a field (R18): log a token's id instead.
 */
#ifndef CRM_LOG_H
#define CRM_LOG_H

#include "err.h"
#include "value.h"

/* Levels are <crm/plugin.h>'s CRM_LOG_DEBUG .. CRM_LOG_ERROR. Lines below
 * the level are dropped.  Default CRM_LOG_INFO. */
void crm_log_set_level(int level);
int crm_log_level(void);
/* "debug" "info" "warn" "error" -> CRM_LOG_*, or -1. */
int crm_log_level_parse(const char *name);
/* CRM_LOG_* -> its name; "error" for anything out of range. */
const char *crm_log_level_name(int level);

/* One line {ts, level, event, msg}.  msg is printf-formatted. */
void crm_log(int level, const char *event, const char *fmt, ...) CRM_PRINTF(3, 4);
/* One line {ts, level, event, ...fields}: fields is a map (or NULL) whose
 * members follow event; ts, level and event in it are ignored.  Takes
 * fields (freed here, also when the level drops the line). */
void crm_log_fields(int level, const char *event, crm_value *fields);

/* Where lines go; NULL = stderr (the default).  Tests point it at a file. */
void crm_log_set_sink(void (*sink)(const char *line, size_t len, void *ud), void *ud);

#endif
