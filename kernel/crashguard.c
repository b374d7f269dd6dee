/*
 * crashguard -- see crashguard.h.  The handler uses only async-signal-safe
 * calls (open, write, fsync, close, sigaction, raise).
 */
#include "crashguard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NAMES 64          /* distinct names counted from the file */
#define MAX_FILE (1u << 20)   /* bytes of the file read at start */
#define ALT_STACK (64 * 1024)

static char crash_path[4096];
static int max_crashes;
static int installed;
static __thread const char *current;

static struct {
    char name[128];
    int count;
} counts[MAX_NAMES];
static int ncounts;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_int(char *buf, size_t at, size_t cap, int v)
{
    char digits[12];
    int n = 0;
    unsigned u = v < 0 ? 0u : (unsigned)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < (int)sizeof digits);
    while (n > 0 && at < cap)
        buf[at++] = digits[--n];
    return at;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    const char *who = current ? current : "(none)";
    char line[256];
    size_t n = 0;
    int fd;
    (void)si;
    (void)uc;
    n = put_str(line, n, sizeof line - 1, who);
    n = put_str(line, n, sizeof line - 1, " ");
    n = put_int(line, n, sizeof line - 1, sig);
    line[n++] = '\n';
    fd = open(crash_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, line, n);
        (void)fsync(fd);
        close(fd);
    }
    {
        char msg[400];
        size_t m = 0;
        m = put_str(msg, m, sizeof msg - 1, "{\"level\":\"error\",\"event\":\"crash\",\"msg\":\"signal ");
        m = put_int(msg, m, sizeof msg - 1, sig);
        m = put_str(msg, m, sizeof msg - 1, current ? " in plugin " : " outside any plugin");
        if (current)
            m = put_str(msg, m, sizeof msg - 1, current);
        m = put_str(msg, m, sizeof msg - 1, "\"}\n");
        (void)!write(2, msg, m);
    }
    /* SA_RESETHAND made the action the default again; the signal is blocked
     * while this runs, so it is delivered, and kills, when this returns
     * (a fault re-raised by the faulting instruction or by raise alike) */
    raise(sig);
}

static void count_file(void)
{
    FILE *f = fopen(crash_path, "r");
    char line[256];
    size_t read_bytes = 0;
    ncounts = 0;
    if (!f)
        return;
    while (read_bytes < MAX_FILE && fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        int i;
        read_bytes += strlen(line);
        if (!sp || sp == line)
            continue;
        *sp = '\0';
        for (i = 0; i < ncounts; i++)
            if (strcmp(counts[i].name, line) == 0)
                break;
        if (i == ncounts) {
            if (ncounts == MAX_NAMES || strlen(line) >= sizeof counts[0].name)
                continue;
            memcpy(counts[ncounts].name, line, strlen(line) + 1); /* fits: checked above */
            counts[ncounts++].count = 0;
        }
        counts[i].count++;
    }
    fclose(f);
}

int crm_crashguard_install(const char *data_dir, int max, crm_err *err)
{
    struct sigaction sa;
    static char *alt;
    stack_t ss;
    if ((size_t)snprintf(crash_path, sizeof crash_path, "%s/%s", data_dir, CRM_CRASHGUARD_FILE) >=
        sizeof crash_path)
        return crm_err_set(err, CRM_BAD_REQUEST, "data folder path too long");
    max_crashes = max;
    count_file();
    if (!alt && !(alt = malloc(ALT_STACK)))
        return crm_err_set(err, CRM_UNAVAILABLE, "crash guard: out of memory");
    ss.ss_sp = alt;
    ss.ss_size = ALT_STACK;
    ss.ss_flags = 0;
    if (sigaltstack(&ss, NULL) != 0)
        return crm_err_set(err, CRM_UNAVAILABLE, "crash guard: sigaltstack: %s", strerror(errno));
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++)
        if (sigaction(fatal_signals[i], &sa, NULL) != 0)
            return crm_err_set(err, CRM_UNAVAILABLE, "crash guard: sigaction: %s", strerror(errno));
    installed = 1;
    return CRM_OK;
}

void *crm_crashguard_thread_init(void)
{
    stack_t ss;
    void *alt;
    if (!installed || !(alt = malloc(ALT_STACK)))
        return NULL;
    ss.ss_sp = alt;
    ss.ss_size = ALT_STACK;
    ss.ss_flags = 0;
    if (sigaltstack(&ss, NULL) != 0) {
        free(alt);
        return NULL;
    }
    return alt;
}

void crm_crashguard_thread_done(void *stack)
{
    stack_t ss;
    if (!stack)
        return;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    free(stack);
}

const char *crm_crashguard_enter(const char *plugin)
{
    const char *prev = current;
    current = plugin;
    return prev;
}

void crm_crashguard_leave(const char *previous)
{
    current = previous;
}

int crm_crashguard_quarantined(const char *plugin, int *count)
{
    int n = 0;
    if (installed)
        for (int i = 0; i < ncounts; i++)
            if (strcmp(counts[i].name, plugin) == 0)
                n = counts[i].count;
    if (count)
        *count = n;
    return installed && max_crashes > 0 && n >= max_crashes;
}
