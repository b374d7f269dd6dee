/*
 * log -- one JSON object per line on stderr.  The JSON codec does the
 * escaping (control bytes, quotes, bad UTF-8 as U+FFFD), so whatever a
 * script or a peer put in a message, the line stays one valid JSON line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "log.h"

static int min_level = CRM_LOG_INFO;
static void (*sink_fn)(const char *line, size_t len, void *ud);
static void *sink_ud;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void crm_log_set_level(int level)
{
    if (level >= CRM_LOG_DEBUG && level <= CRM_LOG_ERROR)
        min_level = level;
}

int crm_log_level(void) { return min_level; }

int crm_log_level_parse(const char *name)
{
    for (int i = 0; i <= CRM_LOG_ERROR; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *crm_log_level_name(int level)
{
    return level >= CRM_LOG_DEBUG && level <= CRM_LOG_ERROR ? level_names[level] : "error";
}

void crm_log_set_sink(void (*sink)(const char *line, size_t len, void *ud), void *ud)
{
    sink_fn = sink;
    sink_ud = ud;
}

/* "2026-11-23T14:38:06.123Z" */
static void timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);
}

static void emit(const char *line, size_t len)
{
    if (sink_fn) {
        sink_fn(line, len, sink_ud);
        return;
    }
    /* one fwrite of the whole line: stderr is unbuffered, so this is one
     * write(2) and lines from two threads never interleave */
    fwrite(line, 1, len, stderr);
}

void crm_log_fields(int level, const char *event, crm_value *fields)
{
    char ts[64];
    crm_value *m;
    char *json = NULL;
    size_t len = 0;
    int ok;
    if (level < CRM_LOG_DEBUG || level > CRM_LOG_ERROR)
        level = CRM_LOG_ERROR;
    if (level < min_level) {
        crm_value_free(fields);
        return;
    }
    timestamp(ts, sizeof ts);
    m = crm_value_map();
    ok = m && crm_map_set(m, "ts", crm_value_cstr(ts)) == 0 &&
         crm_map_set(m, "level", crm_value_cstr(level_names[level])) == 0 &&
         crm_map_set(m, "event", crm_value_cstr(event ? event : "log")) == 0;
    if (ok && fields && fields->type == CRM_T_MAP)
        for (size_t i = 0; ok && i < fields->u.map.n; i++) {
            crm_kv *kv = &fields->u.map.kv[i];
            if (strcmp(kv->key, "ts") == 0 || strcmp(kv->key, "level") == 0 ||
                strcmp(kv->key, "event") == 0)
                continue;
            ok = crm_map_setn(m, kv->key, kv->klen, kv->val) == 0;
            kv->val = NULL; /* moved into m (the map owns it even on failure) */
        }
    crm_value_free(fields);
    if (ok && (json = crm_json_encode(m, &len)) != NULL) {
        char *nl = realloc(json, len + 2);
        if (nl) {
            json = nl;
            json[len++] = '\n';
            json[len] = '\0';
            emit(json, len);
        } else {
            ok = 0;
        }
    }
    if (!ok || !json) {
        char line[160];
        int n = snprintf(line, sizeof line,
                         "{\"ts\":\"%s\",\"level\":\"error\",\"event\":\"log\","
                         "\"msg\":\"out of memory writing a log line\"}\n", ts);
        emit(line, (size_t)n);
    }
    free(json);
    crm_value_free(m);
}

void crm_log(int level, const char *event, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    crm_value *f;
    if (level >= CRM_LOG_DEBUG && level <= CRM_LOG_ERROR && level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    f = crm_value_map();
    if (f && crm_map_set(f, "msg", crm_value_cstr(msg)) != 0) {
        crm_value_free(f);
        f = NULL;
    }
    crm_log_fields(level, event, f);
}
