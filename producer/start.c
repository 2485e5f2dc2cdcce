/* start.c: the start shared by kone-producer's two commands (see start.h). */
#include "start.h"

#include <stdio.h>
#include <string.h>

#include "kd_log.h"

int kd_prod_start(const kd_config *cfg, void (*usage)(void), int *exit_code)
{
    if (cfg->help)
        usage();
    if (kd_config_common_actions(cfg, exit_code))
        return -1;
    if (kd_log_init(PROD_NAME, kd_cfg_str(cfg, KD_CFG_LOG_LEVEL)) != 0) {
        /* GCOVR_EXCL_START: log.level is an enum the configuration's load checked */
        kd_prod_error(stderr, PROD_NAME, "log.level: must be debug, info, warn or error");
        return 2;
        /* GCOVR_EXCL_STOP */
    }
    return 0;
}

void kd_prod_error(FILE *out, const char *name, const char *msg)
{
    size_t n = strlen(name);
    if (strncmp(msg, name, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
        msg += n + 2;
    const char *sub = name + strlen(PROD_NAME); /* "" or " replay-dead" */
    fprintf(out, PROD_NAME ": %s%s%s\n", *sub ? sub + 1 : "", *sub ? ": " : "", msg);
}

int kd_prod_load(kd_config *cfg, const char *name, int argc, char **argv, FILE *out)
{
    kd_err err = {0};
    if (kd_config_load(cfg, KD_PROG_PRODUCER, name, argc, argv, &err) == 0)
        return 0;
    kd_prod_error(out, name, err.msg);
    return 2;
}
