/*
 * lua_pattern -- a step-counting model of Lua 5.4's pattern matcher (see
 * lua_pattern.h for why).  Each function below mirrors one decision of the
 * real matcher, in the same order, so the count is the real matcher's work:
 * one step per match() entry or tail-loop turn, one per character tried by
 * a repetition, and the bytes compared by %b and back-references.
 * Malformed patterns and Lua's own recursion limit (200) end the model with
 * CRM_PAT_BAD: the real function reaches the same place after the same
 * steps and raises its usual error there.
 */
#include "lua_pattern.h"

#include <ctype.h>
#include <setjmp.h>
#include <string.h>
#include <time.h>

#define ESC '%'
#define MAXCAPTURES 32 /* LUA_MAXCAPTURES */
#define MAXDEPTH 200   /* MAXCCALLS in lstrlib.c */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

typedef struct pm {
    const char *src_init, *src_end, *p_end;
    uint64_t steps, cap, next_clock;
    int64_t deadline_ns;
    int depth, level;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[MAXCAPTURES];
    int outcome; /* CRM_PAT_* once the walk jumps out */
    jmp_buf jb;
} pm;

static void over(pm *m)
{
    m->outcome = CRM_PAT_OVER;
    longjmp(m->jb, 1);
}

static void tick(pm *m, uint64_t n)
{
    m->steps += n;
    if (m->steps > m->cap)
        over(m);
    if (m->steps >= m->next_clock) {
        struct timespec ts;
        m->next_clock = m->steps + 65536;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (m->deadline_ns && (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec > m->deadline_ns)
            over(m);
    }
}

static void bad(pm *m)
{
    m->outcome = CRM_PAT_BAD;
    longjmp(m->jb, 1);
}

static int class_matches(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    default: return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res != 0;
}

/* [set]: p at '[', ec at its closing ']'. */
static int bracket_matches(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (p[1] == '^') {
        sig = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == ESC) {
            p++;
            if (class_matches(c, (unsigned char)*p))
                return sig;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

/* End of the single-character class starting at p. */
static const char *class_end(pm *m, const char *p)
{
    switch (*p++) {
    case ESC:
        if (p >= m->p_end)
            bad(m);
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do {
            if (p >= m->p_end)
                bad(m);
            if (*(p++) == ESC && p < m->p_end)
                p++;
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

static int single(pm *m, const char *s, const char *p, const char *ep)
{
    int c;
    if (s >= m->src_end)
        return 0;
    c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case ESC: return class_matches(c, (unsigned char)p[1]);
    case '[':
        tick(m, (uint64_t)(ep - p) / 16); /* long sets cost more per char */
        return bracket_matches(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *do_match(pm *m, const char *s, const char *p);

static const char *max_expand(pm *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single(m, s + i, p, ep)) {
        i++;
        tick(m, 1);
    }
    while (i >= 0) {
        const char *res = do_match(m, s + i, ep + 1);
        if (res)
            return res;
        i--;
    }
    return NULL;
}

static const char *min_expand(pm *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *res = do_match(m, s, ep + 1);
        if (res)
            return res;
        if (!single(m, s, p, ep))
            return NULL;
        s++;
        tick(m, 1);
    }
}

static const char *start_capture(pm *m, const char *s, const char *p, ptrdiff_t what)
{
    const char *res;
    if (m->level >= MAXCAPTURES)
        bad(m);
    m->capture[m->level].init = s;
    m->capture[m->level].len = what;
    m->level++;
    if (!(res = do_match(m, s, p)))
        m->level--;
    return res;
}

static const char *end_capture(pm *m, const char *s, const char *p)
{
    int l;
    const char *res;
    for (l = m->level - 1; l >= 0; l--)
        if (m->capture[l].len == CAP_UNFINISHED)
            break;
    if (l < 0)
        bad(m);
    m->capture[l].len = s - m->capture[l].init;
    if (!(res = do_match(m, s, p)))
        m->capture[l].len = CAP_UNFINISHED;
    return res;
}

static const char *match_balance(pm *m, const char *s, const char *p)
{
    const char *from = s;
    if (p >= m->p_end - 1)
        bad(m);
    if (*s != *p)
        return NULL;
    {
        int b = *p, e = p[1], cont = 1;
        while (++s < m->src_end) {
            if (*s == e) {
                if (--cont == 0) {
                    tick(m, (uint64_t)(s - from));
                    return s + 1;
                }
            } else if (*s == b) {
                cont++;
            }
        }
    }
    tick(m, (uint64_t)(s - from));
    return NULL;
}

static const char *match_capture(pm *m, const char *s, int l)
{
    ptrdiff_t len;
    l -= '1';
    if (l < 0 || l >= m->level || m->capture[l].len == CAP_UNFINISHED)
        bad(m);
    len = m->capture[l].len;
    if (len < 0) /* a position capture never matches text */
        return NULL;
    tick(m, (uint64_t)len / 16);
    if (m->src_end - s >= len && memcmp(m->capture[l].init, s, (size_t)len) == 0)
        return s + len;
    return NULL;
}

static const char *do_match(pm *m, const char *s, const char *p)
{
    if (m->depth-- == 0)
        bad(m); /* Lua: "pattern too complex" */
    tick(m, 1);
init:
    if (p != m->p_end) {
        switch (*p) {
        case '(':
            s = p[1] == ')' ? start_capture(m, s, p + 2, CAP_POSITION)
                            : start_capture(m, s, p + 1, CAP_UNFINISHED);
            break;
        case ')':
            s = end_capture(m, s, p + 1);
            break;
        case '$':
            if (p + 1 != m->p_end)
                goto dflt;
            s = s == m->src_end ? s : NULL;
            break;
        case ESC:
            switch (p[1]) {
            case 'b':
                s = match_balance(m, s, p + 2);
                if (s) {
                    p += 4;
                    tick(m, 1);
                    goto init;
                }
                break;
            case 'f': {
                const char *ep;
                int prev;
                p += 2;
                if (*p != '[')
                    bad(m);
                ep = class_end(m, p);
                prev = s == m->src_init ? 0 : (unsigned char)s[-1];
                if (!bracket_matches(prev, p, ep - 1) &&
                    bracket_matches((unsigned char)*s, p, ep - 1)) {
                    p = ep;
                    tick(m, 1);
                    goto init;
                }
                s = NULL;
                break;
            }
            case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                s = match_capture(m, s, (unsigned char)p[1]);
                if (s) {
                    p += 2;
                    tick(m, 1);
                    goto init;
                }
                break;
            default:
                goto dflt;
            }
            break;
        default:
        dflt: {
            const char *ep = class_end(m, p);
            if (!single(m, s, p, ep)) {
                if (*ep == '*' || *ep == '?' || *ep == '-') {
                    p = ep + 1;
                    tick(m, 1);
                    goto init;
                }
                s = NULL;
            } else {
                switch (*ep) {
                case '?': {
                    const char *res = do_match(m, s + 1, ep + 1);
                    if (res) {
                        s = res;
                    } else {
                        p = ep + 1;
                        tick(m, 1);
                        goto init;
                    }
                    break;
                }
                case '+':
                    s = max_expand(m, s + 1, p, ep);
                    break;
                case '*':
                    s = max_expand(m, s, p, ep);
                    break;
                case '-':
                    s = min_expand(m, s, p, ep);
                    break;
                default:
                    s++;
                    p = ep;
                    tick(m, 1);
                    goto init;
                }
            }
            break;
        }
        }
    }
    m->depth++;
    return s;
}

static const char *match_at(pm *m, const char *s, const char *p)
{
    m->level = 0;
    m->depth = MAXDEPTH;
    return do_match(m, s, p);
}

/* The drivers: the loops of str_find_aux, gmatch_aux and str_gsub.  A
 * function of its own so that nothing it changes is read after longjmp. */
static void walk(pm *m, crm_lua_pat_kind kind, const char *s, const char *p, size_t lp,
                 size_t init, int64_t max_subs)
{
    const char *src = s + init;
    int anchor = 0;
    if (kind != CRM_PAT_GMATCH && lp > 0 && *p == '^') { /* gmatch: '^' is a literal */
        anchor = 1;
        p++;
    }
    if (kind == CRM_PAT_FIND) {
        do {
            if (match_at(m, src, p))
                break;
        } while (src++ < m->src_end && !anchor);
    } else if (kind == CRM_PAT_GMATCH) {
        const char *last = NULL;
        while (src <= m->src_end) {
            const char *e = match_at(m, src, p);
            if (e && e != last)
                src = last = e;
            else
                src++;
        }
    } else {
        const char *last = NULL;
        int64_t n = 0;
        while (n < max_subs) {
            const char *e = match_at(m, src, p);
            if (e && e != last) {
                n++;
                src = last = e;
            } else if (src < m->src_end) {
                src++;
            } else {
                break;
            }
            if (anchor)
                break;
        }
    }
}

/* setjmp here, with the state in the caller's frame: nothing local to
 * this function changes between setjmp and longjmp (C11 7.13.2.1). */
static void guarded_walk(pm *m, crm_lua_pat_kind kind, const char *s, const char *p,
                         size_t lp, size_t init, int64_t max_subs)
{
    if (setjmp(m->jb) == 0)
        walk(m, kind, s, p, lp, init, max_subs);
}

int crm_lua_pattern_cost(crm_lua_pat_kind kind, const char *s, size_t ls, const char *p,
                         size_t lp, size_t init, int64_t max_subs, uint64_t cap,
                         int64_t deadline_ns, uint64_t *steps)
{
    pm m;
    memset(&m, 0, sizeof m);
    m.src_init = s;
    m.src_end = s + ls;
    m.p_end = p + lp;
    m.cap = cap;
    m.deadline_ns = deadline_ns;
    m.next_clock = 65536;
    m.outcome = CRM_PAT_WITHIN;
    if (init > ls)
        init = ls;
    guarded_walk(&m, kind, s, p, lp, init, max_subs);
    *steps = m.steps;
    return m.outcome;
}

uint64_t crm_lua_plain_cost(size_t ls, size_t lp)
{
    /* memchr finds candidates fast; each candidate costs a memcmp of up to
     * lp bytes, about 16 bytes per step */
    if (lp == 0 || lp > ls)
        return 1;
    return (uint64_t)ls / 16 + (uint64_t)(ls - lp + 1) * (lp / 16 + 1);
}
