/* producer-example.c: queue one elevator call from a C program (docs/producer.md).
 *
 * Configuration comes from the KD_* environment variables and --flags of kone-producer
 * (KD_AMQP_HOST, KD_AMQP_PASSWORD_FILE, --producer-confirm-timeout-ms, ...).
 * Exit 0: the broker confirmed the job; 1: it was refused; 2: no connection. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kd_log.h"
#include "kd_producer.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);  /* C11: no POSIX feature macros needed */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    kd_err err = {0};
    kd_config cfg;
    if (kd_config_load(&cfg, KD_PROG_PRODUCER, "my-app", argc, argv, &err) != 0) {
        fprintf(stderr, "my-app: %s\n", err.msg);
        return 2;
    }
    kd_log_init("my-app", kd_cfg_str(&cfg, KD_CFG_LOG_LEVEL));  /* JSON lines on stderr */
    kd_producer *p;
    if (kd_producer_open(&p, &cfg, &err) != 0) {
        fprintf(stderr, "my-app: %s\n", err.msg);
        kd_config_free(&cfg);
        return 2;
    }

    /* A destination call from area 3000 to area 5000 (docs/job-format.md). */
    kd_job job;
    memset(&job, 0, sizeof job);
    job.v = KD_JOB_VERSION;
    snprintf(job.job_id, sizeof job.job_id, "my-app-%lld", (long long)now_ms());
    job.op = KD_OP_CALL;
    snprintf(job.building_id, sizeof job.building_id, "building:9990000951");
    snprintf(job.group_id, sizeof job.group_id, "1");
    job.created_at = now_ms();
    job.deadline = job.created_at + 60000;  /* give up on it after a minute */
    job.area = 3000;
    job.action = 2;
    job.has_destination = true;
    job.destination = 5000;

    int rc = kd_producer_publish(p, &job, &err);
    if (rc == 0)
        printf("queued %s\n", job.job_id);
    else
        fprintf(stderr, "my-app: job %s not queued (%s): %s\n", job.job_id,
                kd_err_code_name(rc), err.msg);

    kd_producer_close(p);
    kd_config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
