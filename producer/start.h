/* start.h: what both commands of kone-producer (publishing, replay-dead) do once their
 * configuration is loaded. */
#ifndef KD_PRODUCER_START_H
#define KD_PRODUCER_START_H

#include <stdio.h>

#include "kd_config.h"

/* The name each command loads its configuration under (kd_config_load's prog_name, shown by
 * --help): PROD_NAME for publishing, PROD_NAME " replay-dead" for replay-dead. */
#define PROD_NAME "kone-producer"

/* Prints msg, an error of the command `name` met before its log starts, as one line on out
 * that names the program exactly once: "kone-producer: [replay-dead: ]msg". The
 * configuration's load names the program in some of its messages (an unknown option, a
 * missing value) and not in others (a bad value): a leading "<name>: " in msg is dropped. */
void kd_prod_error(FILE *out, const char *name, const char *msg);

/* kd_config_load for the command `name` (see PROD_NAME), its error printed on out by
 * kd_prod_error. Returns 0, or 2 (a setup failure's exit code). */
int kd_prod_load(kd_config *cfg, const char *name, int argc, char **argv, FILE *out);

/* Prints usage() before --help's key list, handles --help, --config-table, --config-json and
 * --config-dump (-1: exit with *exit_code), then starts the log at log.level. Returns 0 to go
 * on, -1 to exit with *exit_code, or 2 (a setup failure's exit code). */
int kd_prod_start(const kd_config *cfg, void (*usage)(void), int *exit_code);

#endif
