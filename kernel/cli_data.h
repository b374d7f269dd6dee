/*
 * cli_data -- the command lines of the data tools: `crmd backup`,
 * `crmd restore`, `crmd import`, `crmd export` (flags, summary output,
 * exit codes).  The work is in backup.c, import.c and export.c.
 * Exit codes: 0 done, 1 failed (message on stderr), 2 bad usage; import
 * also 3: finished, but some rows were bad (each reported on stderr).
 */
#ifndef CRM_CLI_DATA_H
#define CRM_CLI_DATA_H

#include <stdio.h>

/* True when cmd is one of the data tools. */
int crm_cli_data_is(const char *cmd);
/* Runs one: argv[0] is the command name.  Returns the exit code. */
int crm_cli_data_run(int argc, char **argv);
/* The usage lines of the data tools, for crmd's usage text. */
void crm_cli_data_usage(FILE *f);

#endif
