/* server.c: the lws context, its TLS vhost and the model tick (see server.h). */
#include "server.h"

#include <stdio.h>
#include <string.h>

#include "kd_log.h"
#include "kd_tls.h"

static void lws_log_emit(int level, const char *line)
{
    kd_log_foreign(level == LLL_ERR    ? KD_LOG_ERROR
                   : level == LLL_WARN ? KD_LOG_WARN
                                       : KD_LOG_DEBUG,
                   "lws", line, NULL);
}

static void on_flush(lws_sorted_usec_list_t *sul)
{
    sim_server *s = lws_container_of(sul, sim_server, flush);
    s->flush_at = 0;
    sim_hub_flush_due(s->hub);
    sim_server_arm_flush(s);
}

void sim_server_arm_flush(sim_server *s)
{
    int64_t due = sim_hub_next_due(s->hub);
    if (due < 0 || s->stop || (s->flush_at && s->flush_at <= due))
        return;
    int64_t now = sim_clock_real_ms(&s->hub->clock);
    s->flush_at = due;
    lws_sul_cancel(&s->flush);
    lws_sul_schedule(s->ctx, 0, &s->flush, on_flush,
                     (lws_usec_t)(due > now ? due - now : 0) * LWS_US_PER_MS);
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    sim_server *s = lws_container_of(sul, sim_server, tick);
    sim_hub_tick(s->hub);
    sim_server_arm_flush(s);
    int64_t now = sim_clock_real_ms(&s->hub->clock);
    if (now - s->last_sweep_ms >= 1000) {
        s->last_sweep_ms = now;
        if (s->sweep)
            s->sweep(s);
    }
    if (!s->stop)
        lws_sul_schedule(s->ctx, 0, &s->tick, on_tick, SIM_TICK_MS * LWS_US_PER_MS);
}

int sim_server_start(sim_server *s, sim_hub *hub, sim_auth *auth, const sim_server_opts *o,
                     kd_err *err)
{
    memset(s, 0, sizeof *s);
    s->hub = hub;
    s->auth = auth;
    s->idle_ms = o->idle_timeout_s * 1000;
    s->max_ms = o->max_conn_s * 1000;
    s->ctl = o->ctl;
    s->cert = o->cert;
    s->key = o->key;
    s->clients = o->clients;
    s->sweep = o->sweep;

    lws_set_log_level(LLL_ERR | LLL_WARN | (kd_log_enabled(KD_LOG_DEBUG) ? LLL_NOTICE : 0),
                      lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o->port;
    info.iface = o->listen;
    info.protocols = o->protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = o->cert;
    info.ssl_private_key_filepath = o->key;
    info.alpn = "http/1.1";
    info.user = s;
    info.timeout_secs = 30;
    s->ctx = lws_create_context(&info);
    if (!s->ctx)
        return kd_err_set(err, KD_ERR_IO,
                          "cannot start the TLS server on %s:%d (port in use, or unreadable "
                          "sim.cert/sim.key?)",
                          o->listen, o->port);
    s->last_sweep_ms = sim_clock_real_ms(&hub->clock);
    lws_sul_schedule(s->ctx, 0, &s->tick, on_tick, SIM_TICK_MS * LWS_US_PER_MS);
    return 0;
}

/* SIGHUP: new clients first (a bad file keeps the old ones), then the certificate, which lws
 * loads into the vhost's SSL_CTX: handshakes from now on present it, open connections keep
 * theirs. Tokens already issued stay valid until they expire. */
static void reload(sim_server *s)
{
    kd_err err = {0};
    if (s->clients && s->clients[0] && sim_auth_reload(s->auth, s->clients, &err))
        kd_error("reload: clients kept as they were: %s", err.msg);
    else
        kd_info("reload: %zu clients from %s", s->auth->n_clients, s->clients);
    /* lws does not say when a file is bad: it would leave the vhost without a certificate */
    if (kd_tls_check_paths("", "", "sim.cert", s->cert, "sim.key", s->key, &err))
        kd_error("reload: the previous certificate stays: %s", err.msg);
    else if (lws_tls_cert_updated(s->ctx, s->cert, s->key, NULL, 0, NULL, 0))
        kd_error("reload: certificate %s not loaded; the previous one stays", s->cert);
    else
        kd_info("reload: certificate %s and key reloaded for new connections", s->cert);
}

void sim_server_run(sim_server *s)
{
    while (!s->stop) {
        if (lws_service(s->ctx, 0) < 0)
            break;
        if (s->reload) {
            s->reload = 0;
            reload(s);
        }
    }
}

void sim_server_stop(sim_server *s)
{
    if (!s->ctx)
        return;
    lws_sul_cancel(&s->tick);
    lws_sul_cancel(&s->flush);
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
}
