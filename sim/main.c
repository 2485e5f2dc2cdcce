/* main.c: kone-sim, the project's simulator of KONE's Elevator Call API 2.0.
 *
 * Reads the configuration table (sim.* keys), loads sim.buildings and sim.clients, applies
 * the start-up fault spec sim.faults, and serves the token endpoint, the resource list,
 * stream-v2 and the /sim/ control endpoint over TLS on sim.listen:sim.port until SIGINT or
 * SIGTERM, then closes every connection and frees everything (clean under ASan). SIGHUP
 * re-reads sim.clients, sim.cert and sim.key (rotations without a restart).
 * docs/kone-sim.md describes what it answers and how to make it fail.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "building.h"
#include "control.h"
#include "hub.h"
#include "kd_config.h"
#include "kd_log.h"
#include "http.h"
#include "server.h"
#include "stream.h"

static sim_server *running;

static void on_signal(int sig)
{
    if (running) {
        if (sig == SIGHUP)
            running->reload = 1;
        else
            running->stop = 1;
        lws_cancel_service(running->ctx);
    }
}

static int read_settings(const kd_config *cfg, sim_server_opts *o, double *speed, int64_t *ttl,
                         kd_err *err)
{
    o->port = (int)kd_cfg_int(cfg, KD_CFG_SIM_PORT);
    *speed = kd_cfg_double(cfg, KD_CFG_SIM_SPEED);
    *ttl = kd_cfg_int(cfg, KD_CFG_SIM_TOKEN_TTL_S);
    o->idle_timeout_s = kd_cfg_int(cfg, KD_CFG_SIM_IDLE_TIMEOUT_S);
    o->max_conn_s = kd_cfg_int(cfg, KD_CFG_SIM_MAX_CONN_S);
    o->listen = kd_cfg_str(cfg, KD_CFG_SIM_LISTEN);
    o->cert = kd_cfg_str(cfg, KD_CFG_SIM_CERT);
    o->key = kd_cfg_str(cfg, KD_CFG_SIM_KEY);
    if (!o->cert[0] || !o->key[0])
        return kd_err_set(err, KD_ERR_INVALID,
                          "sim.cert and sim.key are required (--sim-cert, --sim-key: PEM files)");
    return 0;
}

int main(int argc, char **argv)
{
    kd_config cfg;
    kd_err err = {0};
    if (kd_config_load(&cfg, KD_PROG_SIM, "kone-sim", argc, argv, &err)) {
        fprintf(stderr, "kone-sim: %s\n", err.msg);
        return 2;
    }
    int code = 0;
    if (kd_config_common_actions(&cfg, &code)) {
        kd_config_free(&cfg);
        return code;
    }
    if (kd_log_init("kone-sim", kd_cfg_str(&cfg, KD_CFG_LOG_LEVEL))) {
        fprintf(stderr, "kone-sim: log.level: must be debug, info, warn or error\n");
        kd_config_free(&cfg);
        return 2;
    }
    sim_server_opts opts = {0};
    double speed = 1;
    int64_t ttl = 3600;
    sim_world world = {0};
    sim_auth auth = {0};
    sim_hub *hub = NULL;
    sim_server srv = {0};
    sim_control ctl = {0};
    int rc = 1;
    if (read_settings(&cfg, &opts, &speed, &ttl, &err) ||
        sim_world_load(&world, kd_cfg_str(&cfg, KD_CFG_SIM_BUILDINGS), &err) ||
        sim_auth_load(&auth, kd_cfg_str(&cfg, KD_CFG_SIM_CLIENTS), ttl, &err)) {
        kd_error("%s", err.msg);
        goto out;
    }
    auth.token_log = kd_cfg_str(&cfg, KD_CFG_SIM_TOKEN_LOG);
    auth.max_buildings = kd_cfg_int(&cfg, KD_CFG_SIM_MAX_TOKEN_BUILDINGS);
    if (auth.token_log[0])
        kd_warn("sim.token_log set: every issued token is written to %s (tests only)",
                auth.token_log);
    sim_clock clock;
    sim_clock_init(&clock, speed);
    if (sim_hub_create(&hub, &world, &auth, &clock)) {
        kd_error("out of memory");
        goto out;
    }
    hub->snapshot = kd_cfg_bool(&cfg, KD_CFG_SIM_SNAPSHOT);
    if (hub->snapshot)
        kd_warn("sim.snapshot on: subscribers get the current states at once (KONE does not)");
    if (sim_control_init(&ctl, hub, ttl, kd_cfg_str(&cfg, KD_CFG_SIM_CONTROL_TOKEN))) {
        kd_error("out of memory");
        goto out;
    }
    const char *spec = kd_cfg_str(&cfg, KD_CFG_SIM_FAULTS);
    char msg[300];
    if (spec[0] && sim_control_apply_text(&ctl, spec, "sim.faults", msg, sizeof msg)) {
        kd_error("sim.faults: %s", msg);
        rc = 2;
        goto out;
    }
    opts.ctl = &ctl;
    opts.clients = kd_cfg_str(&cfg, KD_CFG_SIM_CLIENTS);
    /* the HTTP protocol first: lws makes the first one the vhost's default */
    struct lws_protocols protocols[3] = {sim_http_protocol(), sim_stream_protocol(), {0}};
    opts.protocols = protocols;
    opts.sweep = sim_stream_sweep;
    if (sim_server_start(&srv, hub, &auth, &opts, &err)) {
        kd_error("%s", err.msg);
        goto out;
    }
    running = &srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kd_info("kone-sim listening on https://%s:%d (%zu buildings, %zu clients, speed %g, "
            "control endpoint /sim/ %s)",
            opts.listen, opts.port, world.n, auth.n_clients, speed,
            ctl.token ? "with sim.control_token" : "open");
    sim_server_run(&srv);
    kd_info("kone-sim stopping");
    rc = 0;
out:
    running = NULL;
    sim_server_stop(&srv);
    sim_control_free(&ctl);
    sim_hub_free(hub);
    sim_auth_free(&auth);
    sim_world_free(&world);
    kd_config_free(&cfg);
    return rc;
}
