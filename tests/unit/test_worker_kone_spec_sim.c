/* test_worker_kone_spec_sim: every frame the worker's KONE client writes and every frame
 * kone-sim sends, checked against KONE's AsyncAPI file (issue 12, item 7).
 *
 * The real kone-sim (kone_sim_fixture.h) runs at debug level, logging each frame it sends;
 * the worker's client runs in this process at debug level with its log in a file, logging
 * each frame it writes and reads. A session covers every kind of frame: create-session, a
 * tracked destination call to the end, a refused call, an instant cancel, hold_open, delete,
 * a dropped connection and its resume-session, the call_state/+/+ subscription, keep-alive
 * pings; a second, bare stream-v2 client (sim_ws_client.h) subscribes to every lift topic
 * and the action topic, so the simulator also sends position, door, stopping, next-stop,
 * action and (after a mode switch) status events. Then tests/spec/kone_spec_check.py
 * validates each logged frame with jsonschema against components/messages/<name>/payload of
 * tests/spec/elevator-websocket-api-v2.yaml (KONE's file; see docs/kone-sim.md, "Checked
 * against the spec"), and fails on any frame that does not match, on any field the spec does
 * not declare unless docs/kone-sim.md lists it as an extension, and on any kind of frame
 * missing from the run. Needs python3 with PyYAML and jsonschema (scripts/bootstrap-tools).
 */
#include "kone_sim_fixture.h"

#include <jansson.h>
#include <libwebsockets.h>

#include "sim_ws_client.h"

/* The coverage the checker requires: every request the worker makes (config and actions
 * come from its configuration cache), every frame kind the simulator sends. */
#define REQUIRED                                                                                   \
    "create-session,resume-session,lift-call/action,lift-call/hold_open,lift-call/delete,"         \
    "site-monitoring/monitor,common-api/ping,common-api/config,common-api/actions,answer,"         \
    "call-result/action,"                                                                          \
    "call-result/hold_open,monitor-call-state,monitor-lift-position,monitor-door-state,"           \
    "monitor-lift-status,monitor-next-stop-eta,monitor-lift-stopping,monitor-action"

static char worker_log[128];

static size_t on_token_body(char *d, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add < 4096) {
        memcpy(buf + have, d, add);
        buf[have + add] = '\0';
    }
    return size * n;
}

/* A token for the bare client (kd-dev: every scope of building 951). Caller frees. */
static char *sim_token(void)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[160], body[4096] = "";
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v2/oauth2/token", sim.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, sim.cert);
    curl_easy_setopt(c, CURLOPT_USERPWD, "kd-dev:kd-dev-secret-change-me");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "grant_type=client_credentials");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_token_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    json_t *o = json_loads(body, 0, NULL);
    assert_non_null(o);
    char *t = strdup(json_string_value(json_object_get(o, "access_token")));
    json_decref(o);
    assert_non_null(t);
    return t;
}

/* callTypes of monitor-* events the bare client has received. */
static bool ws_has(const wsc *w, const char *call_type)
{
    for (size_t i = 0; i < w->n_in; i++)
        if (!strcmp(json_string_value(json_object_get(w->in[i], "callType")) ?: "", call_type))
            return true;
    return false;
}

/* Runs the bare client until it has an event of every lift kind (bounded wait). */
static void ws_collect(wsc *w, const char *const *kinds, size_t n, int max_ms)
{
    for (int waited = 0; waited < max_ms; waited += 100) {
        size_t have = 0;
        for (size_t i = 0; i < n; i++)
            have += ws_has(w, kinds[i]);
        if (have == n)
            return;
        ws_wait(w, w->n_in + 1, 100);
    }
}

static int count_in(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

static kd_run *hold_open(void)
{
    kd_run *r = call(B951, "1", 0, 0, 0, false);
    r->job.op = KD_OP_HOLD_OPEN;
    r->job.lift_deck = 1001010; /* lift_1, standing at floor 1 */
    r->job.served_area = 1000;
    r->job.has_hard_time = true;
    r->job.hard_time = 2;
    r->job.has_soft_time = true;
    r->job.soft_time = 3;
    return r;
}

/* A transfer call (group 1 ends at floor 11: modified_destination) from floor 3 (lift_1
 * waits at floor 1: it moves, stops, opens its doors) to the state `served`, tracked. */
static void tracked_call(client *c)
{
    expect(run_one(c, call(B951, "1", 3000, 2, 15000, true), 30000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
}

/* The session, with the worker's log in worker_log (stderr moved there meanwhile). */
static void drive(void)
{
    client c;
    client_start(&c, "--kone-connections=1 --kone-keepalive-s=1 --kone-buildings=9990000951");

    /* a connection dropped mid-call: the client reconnects and resumes its session (first:
     * the drop closes every connection, the bare client's too) */
    kd_run *r = call(B951, "1", 1000, 2, 8000, true);
    r->job.has_delay = true;
    r->job.delay = 20;
    pthread_mutex_lock(&obs.mu);
    int states = obs.n, done = obs.done;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, states + 1, 10000));
    assert_int_equal(sim_post("/sim/drop-connections", NULL), 200);
    assert_true(wait_for(&obs.done, done + 1, 30000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    /* the bare client, subscribed to every lift topic and the action topic of group 1 */
    char *tok = sim_token();
    wsc w;
    ws_open(&w, tok);
    free(tok);
    ws_queue(&w, "{\"type\":\"site-monitoring\",\"requestId\":\"spec-1\",\"buildingId\":\"" B951
                 "\",\"callType\":\"monitor\",\"groupId\":\"1\",\"payload\":{\"sub\":\"spec\","
                 "\"duration\":300,\"subtopics\":[\"+/position\",\"+/doors\",\"+/status\","
                 "\"+/next_stop_eta\",\"+/stopping\",\"action/+/+\"]}}");
    assert_true(ws_wait(&w, 1, 5000));

    /* a tracked call to the end; a refused one; an instant cancel (same floor); hold_open */
    tracked_call(&c);
    expect(run_one(&c, call(B951, "1", 1000, 200, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", NULL);
    expect(run_one(&c, call(B951, "1", 3000, 2, 3000, true), 10000), KD_OUTCOME_REJECTED,
           "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(run_one(&c, hold_open(), 10000), KD_OUTCOME_SUCCEEDED, "", NULL);

    /* delete: a call still being allocated (delay 30 s = 1.5 s at speed 20) */
    r = call(B951, "1", 1000, 2, 6000, true);
    r->job.has_delay = true;
    r->job.delay = 30;
    pthread_mutex_lock(&obs.mu);
    states = obs.n;
    done = obs.done;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, states + 1, 10000));
    pthread_mutex_lock(&obs.mu);
    int64_t sid = obs.session_ids[states];
    pthread_mutex_unlock(&obs.mu);
    kd_run *x = call(B951, "1", 0, 0, 0, false);
    x->job.op = KD_OP_CANCEL;
    x->job.session_id = sid;
    kd_kone_submit(c.k, x);
    assert_true(wait_for(&obs.done, done + 2, 10000));
    expect(x, KD_OUTCOME_SUCCEEDED, "", NULL);
    expect(r, KD_OUTCOME_REJECTED, "CALL_DELETED", NULL);

    /* idle: keep-alive pings (kone.keepalive_s 1), bounded wait; the checker requires one */
    for (int i = 0; i < 100 && count_in(worker_log, "\\\"callType\\\":\\\"ping\\\"") < 2; i++)
        usleep(100000);
    client_stop(&c);

    /* lift status events: group 1 out of service and back */
    assert_int_equal(sim_post("/sim/faults", "{\"buildings\":{\"" B951
                                             "\":{\"groups\":{\"1\":{\"mode\":\"OSS\"}}}}}"),
                     200);
    assert_int_equal(sim_post("/sim/faults", "{\"buildings\":{\"" B951
                                             "\":{\"groups\":{\"1\":{\"mode\":\"NOR\"}}}}}"),
                     200);
    static const char *const kinds[] = {"monitor-lift-position", "monitor-door-state",
                                        "monitor-lift-status",   "monitor-next-stop-eta",
                                        "monitor-lift-stopping", "monitor-action"};
    ws_collect(&w, kinds, sizeof kinds / sizeof *kinds, 20000);
    ws_close(&w);
}

static void test_frames_match_the_spec(void **state)
{
    (void)state;
    NEED_SIM();
    sim_stop();
    sim_start("--log-level=debug", NULL);
    snprintf(worker_log, sizeof worker_log, "%s/worker.log", sim.dir);
    unlink(worker_log);

    fflush(stderr);
    int saved = dup(2);
    int fd = open(worker_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    kd_log_init("kone-worker", "debug");
    drive();
    kd_log_init("test", "error");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    sim_stop(); /* its log complete */

    /* first, that the checker can fail: known-bad frames, one defect each */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "python3 %s/tests/spec/kone_spec_check.py --spec %s/tests/spec/"
             "elevator-websocket-api-v2.yaml --docs %s/docs/kone-sim.md --self-test",
             sim.src, sim.src, sim.src);
    fflush(stdout);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "python3 %s/tests/spec/kone_spec_check.py --spec %s/tests/spec/"
             "elevator-websocket-api-v2.yaml --docs %s/docs/kone-sim.md --require %s %s %s",
             sim.src, sim.src, sim.src, REQUIRED, sim.log, worker_log);
    fflush(stdout);
    int rc = system(cmd);
    if (getenv("KD_KEEP_SIM_LOG"))
        fprintf(stderr, "worker log kept in %s\n", worker_log);
    else
        unlink(worker_log);
    assert_int_equal(rc, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    kd_log_init("test", "error");
    if (sim_init(argv[0]))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_frames_match_the_spec, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sim_finish();
    return rc;
}
