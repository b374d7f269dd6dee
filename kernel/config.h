/*
 * config -- every option of `crmd serve`, from the built-in defaults, a
 * config file, then command-line flags (a flag wins over the file).
 *
 * The file is INI (read with Debian's libinih): `[section]` lines and
 * `key = value` lines, `#` or `;` comments.  Each key has exactly one
 * section, and its flag has the same name (`[limits] max-message` is
 * `--max-message`).  docs/config.md is the manual; crmd.conf.example holds
 * every key at its default (a unit test keeps the two equal).
 *
 * Refused, with "FILE:LINE: what", and nothing half-applied: an unknown
 * section or key, a key in the wrong section, a key given twice, a value
 * of the wrong form or out of range, a line longer than 4096 bytes, a NUL
 * byte, and any line that is neither a section, a key nor a comment.
 */
#ifndef CRM_CONFIG_H
#define CRM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "net.h"

#define CRM_CONFIG_MAX_ORIGINS 16
/* Read when no --config is given and this file exists (the working
 * directory's); a --config file that is missing is an error. */
#define CRM_CONFIG_DEFAULT_PATH "./crmd.conf"

typedef struct crm_config {
    /* Every string is owned (freed by crm_config_free). */
    char *listen;                 /* "HOST:PORT"; port 0 = any free port */
    char *data, *schemas, *scripts, *plugins;
    char *web;                    /* "" = serve no static files */
    char *tls_cert, *tls_key;     /* PEM files; both "" = plain ws:// and http:// */
    char *origins[CRM_CONFIG_MAX_ORIGINS + 1]; /* NULL-terminated */
    char *hosts[CRM_CONFIG_MAX_ORIGINS + 1];   /* Host names allowed besides IP
                                                * addresses and localhost; NULL-terminated */
    int log_level;                /* CRM_LOG_* */
    int plugin_crashes;           /* quarantine a plugin after this many crashes (0 = never) */
    int commit_flushes;           /* 1: a commit's meta page rides on the next flush
                                   * (store meta_async); 2: LMDB's two flushes per commit */
    crm_net_opts net;             /* the limits (host, port, origins etc. unused here) */
    int64_t feed_max_age_ms;      /* crm_store_opts' retention, by age (0 = forever) */
    uint64_t feed_max_bytes;      /* and by size (0 = no cap) */
    double time_scale;            /* flag only (--time-scale): tests of timers */
    int64_t map_size_mib, map_max_mib; /* flags only (tests, R5): LMDB map and its
                                        * growth ceiling in MiB; 0 = the store's defaults */
    char *path;                   /* the file read, or NULL */
    int line_of[48];              /* per key: the file line that set it, 0 = not */
} crm_config;

/* c = the built-in defaults.  CRM_OK or CRM_INTERNAL (out of memory). */
int crm_config_init(crm_config *c, crm_err *err);
void crm_config_free(crm_config *c);

/* Sets one option by its key (= flag) name from text, checked as the file
 * and the flags check it.  `origin` appends (at most 16).  Errors:
 * BAD_REQUEST "KEY: why", c unchanged. */
int crm_config_set(crm_config *c, const char *key, const char *value, crm_err *err);
/* Empties the origin list (the first --origin flag replaces the file's). */
void crm_config_clear_origins(crm_config *c);

/* Reads the INI file at path over c.  Errors: UNAVAILABLE "PATH: strerror",
 * BAD_REQUEST "PATH:LINE: why".  On error c may hold some of the file's
 * values: throw it away. */
int crm_config_load(crm_config *c, const char *path, crm_err *err);

/* Checks what needs more than one key: idle-secs > ping-secs, listen is
 * HOST:PORT, cert and key both given or both empty.  BAD_REQUEST. */
int crm_config_check(const crm_config *c, crm_err *err);

/* `crmd serve`'s argv (argv[0] is "serve"): --config FILE (else
 * default_path when that file exists; NULL = none), then every flag over it,
 * then crm_config_check.  *help set by --help, *print by --print-config.
 * Errors: as crm_config_load, and BAD_REQUEST "--FLAG: why" or "unknown
 * option ARG" or "unexpected argument ARG". */
int crm_config_args(crm_config *c, int argc, char **argv, const char *default_path,
                    int *help, int *print, crm_err *err);

/* Splits listen into host (NUL-terminated, cap bytes) and port. 0 or -1. */
int crm_config_listen(const crm_config *c, char *host, size_t cap, int *port);

/* The option table, for docs, usage and tests: key i's name (NULL past the
 * end), its section ("" for flag-only keys) and its value in c as the file
 * would write it (origins space-separated).  Returns buf. */
const char *crm_config_key(size_t i);
const char *crm_config_section(size_t i);
const char *crm_config_format(const crm_config *c, size_t i, char *buf, size_t cap);
/* The name of the first key whose value differs between a and b, or NULL
 * when they are equal in every key. */
const char *crm_config_diff(const crm_config *a, const crm_config *b);
/* Writes c as an INI file (every key, no comments) to f. */
void crm_config_write(const crm_config *c, FILE *f);

#endif
