/* producer.c: see kd_producer.h. A thin layer over kd_amqp and kd_job.
 *
 * Why synchronous: an upstream application usually queues one call at a time (a badge
 * read, a button press) and wants to know, before it answers its own user, that the job
 * is safely queued. kone-producer, which pushes files of jobs, pipelines through kd_amqp
 * directly instead.
 *
 * Reconnect policy: a failed connection is only discovered when it is used (rabbitmq-c
 * does nothing in the background, so an idle application misses heartbeats and the
 * broker drops it). So publish tries the current connection, and on KD_ERR_IO opens a
 * new one once and sends again. A nack, a return or a timeout is not retried: the
 * connection worked and the broker (or the clock) gave an answer the caller must see.
 */
#include "kd_producer.h"

#include <stdlib.h>

#include "kd_amqp.h"
#include "kd_log.h"

struct kd_producer {
    const kd_config *cfg;
    kd_amqp *amqp; /* NULL after a failed reconnect; the next publish retries */
    int confirm_timeout_ms;
    msgpack_sbuffer sbuf; /* reused for every encode */
};

int kd_producer_open(kd_producer **out, const kd_config *cfg, kd_err *err)
{
    *out = NULL;
    int64_t timeout = kd_cfg_int(cfg, KD_CFG_PRODUCER_CONFIRM_TIMEOUT_MS);
    int rc;
    kd_producer *p = calloc(1, sizeof *p);
    if (!p)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    p->cfg = cfg;
    p->confirm_timeout_ms = (int)timeout;
    msgpack_sbuffer_init(&p->sbuf);
    rc = kd_amqp_connect(&p->amqp, cfg, err);
    if (rc) {
        kd_producer_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

static int reconnect(kd_producer *p, kd_err *err)
{
    kd_amqp_close(p->amqp);
    p->amqp = NULL;
    return kd_amqp_connect(&p->amqp, p->cfg, err);
}

int kd_producer_publish(kd_producer *p, const kd_job *job, kd_err *err)
{
    int rc = kd_job_validate(job, err);
    if (rc)
        return rc;
    msgpack_sbuffer_clear(&p->sbuf);
    rc = kd_job_encode(job, &p->sbuf, err);
    if (rc)
        return rc;
    if (!p->amqp && (rc = reconnect(p, err)) != 0)
        return rc;
    rc = kd_amqp_publish_confirmed(p->amqp, job->job_id, p->sbuf.data, p->sbuf.size,
                                   p->confirm_timeout_ms, err);
    if (rc != KD_ERR_IO)
        return rc;
    kd_warn("%s; reconnecting and publishing job %s again", err ? err->msg : "connection lost",
            job->job_id);
    if ((rc = reconnect(p, err)) != 0)
        return rc;
    return kd_amqp_publish_confirmed(p->amqp, job->job_id, p->sbuf.data, p->sbuf.size,
                                     p->confirm_timeout_ms, err);
}

void kd_producer_close(kd_producer *p)
{
    if (!p)
        return;
    kd_amqp_close(p->amqp);
    msgpack_sbuffer_destroy(&p->sbuf);
    free(p);
}
