/*
 * lua_pattern -- how much work Lua's pattern matcher would do, measured
 * before it starts (issue 4: the count hook never fires inside a C
 * function, and string.find with a dozen `a*` ran 29 s).
 *
 * crm_lua_pattern_cost walks the same backtracking search as lstrlib's
 * matcher (a step-for-step model written from the Lua 5.4 reference
 * manual's pattern rules: the same greedy/lazy expansion order, captures,
 * back-references, %b and %f) and counts its steps, stopping as soon as
 * the count passes cap.  The real function then runs only when the count
 * stayed within the cap, so it is known to finish quickly.  The check runs
 * the search twice at worst (once here, once in Lua), which is cheap next
 * to the bound it buys.
 *
 * Pure C; never calls Lua, never allocates.  s and p must be NUL-terminated
 * past their lengths (Lua strings are), as lstrlib reads one byte past the
 * end in the same places.
 */
#ifndef CRM_LUA_PATTERN_H
#define CRM_LUA_PATTERN_H

#include <stddef.h>
#include <stdint.h>

typedef enum crm_lua_pat_kind {
    CRM_PAT_FIND,   /* string.find / string.match: first match from init */
    CRM_PAT_GMATCH, /* string.gmatch: every match from init */
    CRM_PAT_GSUB    /* string.gsub: every match, at most max_subs */
} crm_lua_pat_kind;

enum {
    CRM_PAT_WITHIN = 0, /* *steps is the exact work; within cap */
    CRM_PAT_OVER = 1,   /* would take more than cap steps */
    CRM_PAT_BAD = 2     /* malformed pattern (or too deep): the real
                         * function reports it, after at most *steps */
};

/* init: 0-based start offset (<= ls).  max_subs: gsub's 4th argument (or
 * ls + 1).  deadline_ns (CLOCK_MONOTONIC; 0 = none): the walk also stops
 * (CRM_PAT_OVER) once it is past, checked every 65536 steps, so the call's
 * time budget covers the check itself.  Returns CRM_PAT_*; *steps gets the
 * steps counted. */
int crm_lua_pattern_cost(crm_lua_pat_kind kind, const char *s, size_t ls, const char *p,
                         size_t lp, size_t init, int64_t max_subs, uint64_t cap,
                         int64_t deadline_ns, uint64_t *steps);

/* Work of a plain (no specials) search of a needle of length lp in ls
 * bytes, in the same units (worst case: a memcmp at every position). */
uint64_t crm_lua_plain_cost(size_t ls, size_t lp);

#endif
