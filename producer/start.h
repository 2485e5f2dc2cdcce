/* start.h: what both commands of kone-producer (publishing, replay-dead) do once their
 * configuration is loaded. */
#ifndef KD_PRODUCER_START_H
#define KD_PRODUCER_START_H

#include "kd_config.h"

/* Prints usage() before --help's key list, handles --help, --config-table, --config-json and
 * --config-dump (-1: exit with *exit_code), then starts the log at log.level. Returns 0 to go
 * on, -1 to exit with *exit_code, or 2 (a setup failure's exit code). */
int kd_prod_start(const kd_config *cfg, void (*usage)(void), int *exit_code);

#endif
