/* start.c: the start shared by kone-producer's two commands (see start.h). */
#include "start.h"

#include <stdio.h>

#include "kd_log.h"

int kd_prod_start(const kd_config *cfg, void (*usage)(void), int *exit_code)
{
    if (cfg->help)
        usage();
    if (kd_config_common_actions(cfg, exit_code))
        return -1;
    if (kd_log_init("kone-producer", kd_cfg_str(cfg, KD_CFG_LOG_LEVEL)) != 0) {
        /* GCOVR_EXCL_START: log.level is an enum the configuration's load checked */
        fprintf(stderr, "kone-producer: log.level: must be debug, info, warn or error\n");
        return 2;
        /* GCOVR_EXCL_STOP */
    }
    return 0;
}
