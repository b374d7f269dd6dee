/*
 * test_orphans -- a test that dies leaves no crmd behind.  ctest kills a
 * test that runs past its timeout; before, the crmd servers it had started
 * kept running (and listening) after it.  Here a child process starts crmd
 * the way every C test does (crmd_start: crmd_spawn), tells the parent the
 * server's pid and port, and is SIGKILLed as ctest's timeout would: the
 * server must be gone within seconds (PR_SET_PDEATHSIG, testutil.h
 * crm_test_die_with_parent).  The Node tests start crmd through setpriv
 * --pdeathsig for the same reason.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "wsclient.h"

/* Running, or about to: not gone and not a zombie (a zombie has died; who
 * reaps it, once its parent is dead, is up to this machine's init). */
static int alive(pid_t pid)
{
    char path[64], buf[512], *rp;
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    rp = strrchr(buf, ')'); /* "PID (comm) STATE ..." */
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static void server_dies_with_its_killed_test(void **state)
{
    int fds[2];
    pid_t test, server = 0;
    int port = 0, st;
    (void)state;
    assert_int_equal(pipe(fds), 0);
    test = fork();
    assert_true(test >= 0);
    if (test == 0) { /* the "test": starts a server, reports it, waits to be killed */
        crmd_proc p;
        int msg[2];
        close(fds[0]);
        if (crmd_start(&p, getenv("CRMD_BIN"), getenv("CRM_SCHEMAS"), NULL) != 0)
            _exit(2);
        msg[0] = (int)p.pid;
        msg[1] = p.port;
        if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(3);
        for (;;)
            pause();
    }
    close(fds[1]);
    {
        int msg[2];
        assert_int_equal(read(fds[0], msg, sizeof msg), (ssize_t)sizeof msg);
        server = (pid_t)msg[0];
        port = msg[1];
    }
    close(fds[0]);
    assert_true(server > 0 && port > 0);
    {
        int code = 0;
        char *body = NULL;
        assert_int_equal(http_get(port, "/healthz", &code, &body), 0); /* it serves */
        assert_int_equal(code, 200);
        free(body);
    }
    assert_int_equal(kill(test, SIGKILL), 0); /* what ctest's timeout does */
    assert_int_equal(waitpid(test, &st, 0), test);
    /* the server is the killed test's child: init reaps it once it dies */
    for (int i = 0; i < 200 && alive(server); i++)
        usleep(25000);
    if (alive(server)) {
        kill(server, SIGKILL); /* leave nothing behind, then fail */
        fail_msg("crmd %d outlived its killed test by 5 s", (int)server);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_dies_with_its_killed_test),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
