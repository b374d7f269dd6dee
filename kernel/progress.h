/*
 * progress -- progress on stderr for long command-line jobs (crmd demo,
 * import, export): a redrawn bar when stderr is a terminal, else a plain
 * line every 10 seconds (logs and CI stay readable), or nothing.
 */
#ifndef CRM_PROGRESS_H
#define CRM_PROGRESS_H

#include <stdint.h>

typedef struct crm_progress {
    int on, tty;
    int bytes;              /* done/total are bytes: shown as KiB/MiB */
    const char *who;        /* "crmd import": prefixes plain lines (borrowed) */
    const char *phase;      /* borrowed */
    uint64_t done, total;   /* total 0 = unknown (no bar, no ETA) */
    char note[96];          /* shown after the figures, e.g. "1200 rows, 3 bad" */
    double t0, last;
    int shown;
} crm_progress;

/* on = 0 keeps it silent; tty is taken from isatty(2). */
void crm_progress_init(crm_progress *p, const char *who, int on);
/* Starts a phase: resets done and the clock. */
void crm_progress_phase(crm_progress *p, const char *phase, uint64_t total);
/* Shows the state if enough time has passed (always when final; final ends
 * the bar's line). */
void crm_progress_show(crm_progress *p, int final);
/* Call before printing another line to stderr while a bar may be drawn:
 * clears the bar so the message does not land in the middle of it. */
void crm_progress_clear(crm_progress *p);
/* Seconds on the monotonic clock. */
double crm_progress_now(void);

#endif
