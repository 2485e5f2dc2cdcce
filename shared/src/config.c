/* config.c: the configuration table and its loader (see kd_config.h).
 *
 * Why one table for all programs: operators set the same KD_* variables for the worker,
 * the producer and the tools, and the docs are generated from and checked against this
 * one list. A key is added here, with its default and one line of help, and nowhere else.
 */
#include "kd_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define W KD_PROG_WORKER
#define P KD_PROG_PRODUCER
#define S KD_PROG_SIM
#define E KD_PROG_EVENTS

static const kd_config_key kd_keys[] = {
    /* common */
    {"log.level", "info", W | P | S | E, false, "Log level: debug, info, warn, error."},

    /* RabbitMQ */
    {"amqp.host", "127.0.0.1", W | P, false,
     "RabbitMQ host, or a comma-separated list of cluster nodes ([amqps://|amqp://]host[:port]); "
     "after a lost connection the next node is tried first. An amqps:// or amqp:// prefix turns "
     "TLS on or off for that node whatever amqp.tls says (default port 5671 or 5672)."},
    {"amqp.port", "5671", W | P, false,
     "RabbitMQ port of nodes named without one (5671: AMQPS; plain AMQP is usually 5672)."},
    {"amqp.vhost", "/", W | P, false, "RabbitMQ virtual host."},
    {"amqp.user", "guest", W | P, false, "RabbitMQ user name."},
    {"amqp.password", "guest", W | P, true,
     "RabbitMQ password (secret; also KD_AMQP_PASSWORD_FILE)."},
    /* RabbitMQ TLS (shared/src/amqp_tls.c, docs/security.md#transport-security) */
    {"amqp.tls", "true", W | P, false,
     "Connect to RabbitMQ over TLS (AMQPS), the broker's certificate and host name verified. "
     "false: plain AMQP, the password and every job in clear (a warning at every start)."},
    {"amqp.ca_file", "", W | P, false,
     "PEM CA bundle that verifies RabbitMQ's certificate (empty: the system CAs)."},
    {"amqp.cert_file", "", W | P, false,
     "PEM client certificate for RabbitMQ (mutual TLS; empty: none). Needs amqp.key_file."},
    {"amqp.key_file", "", W | P, false,
     "Unencrypted PEM private key of amqp.cert_file (keep it 0400)."},
    {"amqp.tls_insecure", "false", W | P, false,
     "INSECURE, for diagnosis only: accept any certificate and host name from RabbitMQ (anyone on "
     "the path can read and forge jobs). Logs a warning at every start."},
    {"amqp.heartbeat_s", "10", W | P, false,
     "AMQP heartbeat interval in seconds (0 disables; keep it on so a dead network is noticed)."},
    {"amqp.exchange", "kone.calls", W | P, false, "Durable direct exchange jobs are published to."},
    {"amqp.queue", "kone.calls", W | P, false,
     "Quorum work queue bound to the exchange; the worker consumes it."},
    {"amqp.routing_key", "kone.calls", W | P, false,
     "Routing key binding the work queue to the exchange."},
    {"amqp.retry_exchange", "", W | P, false,
     "Direct exchange of the retry tiers (empty: {amqp.queue}.retry); tier queues are "
     "{amqp.queue}.retry.{ms}, one per retry.tiers_ms entry."},
    {"amqp.dead_exchange", "", W | P, false,
     "Direct exchange of the dead-letter queue (empty: {amqp.queue}.dead)."},
    {"amqp.dead_queue", "", W | P, false,
     "Quorum dead-letter queue, the parking lot of undecodable and finally failed jobs (empty: "
     "{amqp.queue}.dead)."},
    {"amqp.delivery_limit", "20", W | P, false,
     "x-delivery-limit of the work queue: the broker parks a job returned more than this many "
     "times in the dead-letter queue (RabbitMQ 4.x would drop it after 20). The backstop behind "
     "worker.max_deliveries, which must stay below it. A queue made without it is used as it is, "
     "with a warning (RUNBOOK.md)."},
    {"amqp.consumer_timeout_ms", "1800000", W, false,
     "RabbitMQ's consumer_timeout as the broker has it (0: none): a delivery unacked that long "
     "closes the channel. The worker refuses to start when its settings let it hold a delivery "
     "longer (docs/failure-handling.md, Broker limits)."},

    /* jobs */
    {"job.default_ttl_ms", "60000", W | P, false,
     "Deadline of a job that has none: created_at plus this many ms."},
    {"job.max_age_ms", "600000", W, false,
     "A job's deadline is lowered to at most created_at plus this many ms (0: no cap)."},

    /* worker */
    {"worker.id", "", W, false, "Worker name in result events (default: host name and pid)."},
    {"worker.inflight", "64", W, false, "Jobs in flight at once; also the AMQP prefetch."},
    {"worker.drain_ms", "10000", W, false,
     "On SIGTERM, how long to wait for in-flight jobs before handing them back."},
    {"worker.max_deliveries", "10", W, false,
     "A job handed out this many times without an outcome (each time its worker crashed, was "
     "killed or lost its connection) is parked in the dead-letter queue with outcome failed, error "
     "delivery_limit, without a call (0: never)."},
    {"worker.timings_file", "", W, false,
     "Diagnostics (scripts/bench): append one line per acked delivery to this file: received, "
     "request sent, outcome known, result produced, acked, in µs since the epoch, then the "
     "building, the outcome and final or requeue (empty: off)."},

    /* call ledger (PostgreSQL) */
    {"ledger.url", "postgresql://kd@127.0.0.1:5432/kone_dispatch?sslmode=verify-full", W, true,
     "Call ledger: a libpq connection URI "
     "(postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=...), or none to "
     "run without a ledger (duplicate calls become possible; a warning at every start). It may "
     "carry the password (secret; also KD_LEDGER_URL_FILE)."},
    {"ledger.ambiguous", "unknown", W, false,
     "A job whose call was written but never answered (its worker died): unknown (default: final "
     "outcome unknown, never called twice) or retry (call it again: a second elevator call is "
     "possible)."},
    {"ledger.lease_ms", "15000", W, false,
     "How long a worker's claim on a job stays valid without being renewed (renewed every third of "
     "it while the worker lives); a redelivered job whose claim is still leased waits for it."},
    {"ledger.retention_h", "168", W, false,
     "Ledger rows expire this many hours after their job ended; expired rows are purged by the "
     "workers (about once a minute)."},
    {"ledger.timeout_ms", "5000", W, false,
     "Connecting to the ledger, and any ledger statement, gives up after this long; the worker "
     "then stops taking jobs until the ledger answers again."},

    /* retries */
    {"retry.base_ms", "1000", W, false,
     "Backoff base: the delay before attempt n+1 is uniform in [0, min(cap, base * 2^(n-1))] ms "
     "(full jitter)."},
    {"retry.cap_ms", "30000", W, false, "Backoff cap in ms."},
    {"retry.max_attempts", "5", W, false,
     "Attempts per job (1 = no retry); after the last, outcome failed and the job goes to the "
     "dead-letter queue."},
    {"retry.max_requeues", "20", W, false,
     "Trips through a retry tier per job (x-kd-requeues: retries, and jobs parked while their "
     "building's circuit is open); a job re-queued this often already ends failed, error "
     "requeue_limit, in the dead-letter queue (expired when its deadline passed). 0: no limit."},
    {"retry.tiers_ms", "1000,2000,5000,10000,30000", W | P, false,
     "Delays of the retry tier queues (ascending ms); a drawn delay is rounded up to a tier."},

    /* Kafka */
    {"kafka.brokers", "127.0.0.1:9092", W | E, false, "Kafka bootstrap servers."},
    /* Kafka TLS and SASL (shared/src/kafka_security.c, docs/security.md#transport-security) */
    {"kafka.security_protocol", "ssl", W | E, false,
     "How to reach Kafka: ssl (TLS, the broker's certificate and host name verified; a client "
     "certificate with kafka.cert_file), sasl_ssl (TLS plus SASL SCRAM login) or plaintext "
     "(everything in clear: a warning at every start)."},
    {"kafka.ca_file", "", W | E, false,
     "PEM CA bundle that verifies the Kafka brokers' certificates (empty: the system CAs)."},
    {"kafka.cert_file", "", W | E, false,
     "PEM client certificate for Kafka (mutual TLS; empty: none). Needs kafka.key_file."},
    {"kafka.key_file", "", W | E, false,
     "Unencrypted PEM private key of kafka.cert_file (keep it 0400)."},
    {"kafka.sasl_mechanism", "SCRAM-SHA-512", W | E, false,
     "SASL mechanism with kafka.security_protocol sasl_ssl: SCRAM-SHA-512 or SCRAM-SHA-256."},
    {"kafka.sasl_user", "", W | E, false, "SASL user name with kafka.security_protocol sasl_ssl."},
    {"kafka.sasl_password", "", W | E, true,
     "SASL password of kafka.sasl_user (secret; also KD_KAFKA_SASL_PASSWORD_FILE)."},
    {"kafka.topic_results", "kone.call.results", W | E, false,
     "Topic of job results (one per job)."},
    {"kafka.topic_events", "kone.call.events", W | E, false,
     "Topic of call-state events of tracked calls."},
    {"kafka.linger_ms", "5", W, false,
     "librdkafka linger.ms: how long to batch results before sending."},
    {"kafka.compression", "none", W, false,
     "librdkafka compression.codec for results and events: none, gzip, snappy, lz4 or zstd. Off by "
     "default: results are small and batches short, so a codec costs more CPU than it saves "
     "(docs/performance.md)."},
    {"kafka.max_undelivered", "1000", W, false,
     "Backpressure: stop taking jobs while more results than this wait for Kafka; resume below "
     "half."},
    {"kafka.topic_metrics", "kone.worker.metrics", W, false,
     "Topic of the worker's metric snapshots (docs/events.md); see metrics.kafka_interval_ms."},

    /* metrics and health endpoint */
    {"metrics.listen", "0.0.0.0", W, false,
     "Address of the /metrics, /healthz and /readyz HTTP endpoint (docs/metrics.md). 0.0.0.0 so "
     "that Prometheus and the kubelet reach it in a pod (the chart's NetworkPolicy limits who "
     "may); 127.0.0.1 where the scraper runs on the same machine (deploy/systemd)."},
    {"metrics.port", "9464", W, false,
     "Port of the metrics endpoint; 0 picks a free port (logged), -1 turns the endpoint off."},
    {"metrics.buildings", "", W, false,
     "Comma-separated building ids that get their own `building` label value; any other building "
     "is counted as 'other'."},
    {"metrics.kafka_interval_ms", "60000", W, false,
     "Publish a metrics snapshot to kafka.topic_metrics this often (0: never)."},
    {"metrics.max_connections", "256", W, false,
     "Open connections the metrics endpoint accepts in all; more are closed at once."},
    {"metrics.max_connections_per_ip", "8", W, false,
     "Open connections the metrics endpoint accepts from one client address (so one address cannot "
     "starve the probes); at most metrics.max_connections. Raise it where every client comes "
     "through one proxy address (a service-mesh sidecar)."},
    {"metrics.health_stale_ms", "30000", W, false,
     "/healthz fails when the main loop has not turned for this long."},

    /* KONE API */
    {"kone.token_url", "https://127.0.0.1:8443/api/v2/oauth2/token", W, false,
     "OAuth2 token endpoint."},
    {"kone.ws_url", "wss://127.0.0.1:8443/stream-v2", W, false, "WebSocket endpoint (stream-v2)."},
    {"kone.client_id", "", W, false, "KONE application client id."},
    {"kone.client_secret", "", W, true,
     "KONE application client secret (secret; also KD_KONE_CLIENT_SECRET_FILE)."},
    {"kone.scope", "", W, false,
     "Space-separated scopes to request, e.g. 'callgiving/building:9990000951' (empty: one "
     "callgiving/building:<id> scope per kone.buildings entry, or the application's default when "
     "that is empty too)."},
    {"kone.lift_modes_refused", "-1:OSS,3:ATS,5:PRC,9:FRD", W, false,
     "lift_mode codes (monitor-lift-status) in which a group is not called, as code:NAME pairs. "
     "KONE's spec documents only -1 (out of service); 3, 5 and 9 are kone-sim's codes for "
     "attendant, priority and fire mode: confirm your site's codes with KONE. A group whose every "
     "reporting lift is in one of these modes gets its calls rejected group_mode, not sent."},
    {"kone.group_mode_policy", "reject", W, false,
     "What a call for a group in a refused mode (kone.lift_modes_refused) gets: 'reject' (rejected "
     "group_mode, final) or 'hold' (failed transient group_mode_held: re-queued through the retry "
     "tiers without using an attempt, like circuit_open, and called once the mode clears; expired "
     "when its deadline leaves no time, the last error naming the mode)."},
    {"kone.robotcall_buildings", "", W, false,
     "Buildings served with robot calls: each gets a robotcall/building:<id> scope instead of "
     "callgiving (KONE's scope for 'robot' type calls). Space- or comma-separated ids; they are "
     "served like kone.buildings entries (added to that list when missing)."},
    {"kone.discover_buildings", "false", W, false,
     "When kone.buildings, kone.robotcall_buildings and kone.scope are empty: at start, ask KONE "
     "for the application's buildings (GET /api/v2/application/self/resources with an "
     "application/inventory token, on kone.token_url's host) and serve those, with a callgiving "
     "scope each (split over tokens by kone.buildings_per_token). The worker does not start when "
     "the list cannot be had."},
    {"kone.buildings_per_token", "0", W, false,
     "At most this many buildings' scopes in one token (KONE's limit for your application; 0: no "
     "limit). When kone.buildings lists more, the worker holds one token per share of them, each "
     "with its own connections (kone.connections must be at least the number of tokens), and sends "
     "each building's jobs on its token's connections."},
    {"kone.buildings", "", W, false,
     "Buildings this worker serves, space- or comma-separated ids (9990000951 or "
     "building:9990000951). Gives the default kone.scope (callgiving per building), the building a "
     "connection that has made no call yet pings to stay open (without one, KONE may close it "
     "after ~60 s idle and it is reopened), and, when set, the only buildings served: a job for "
     "another building is rejected `scope` before any call (KONE would answer 403)."},
    {"kone.ca_file", "", W, false,
     "CA bundle to verify KONE's certificate (empty: the system CAs). Verification is always on."},
    {"kone.connections", "2", W, false,
     "WebSocket connections in the pool; jobs are spread over them."},
    {"kone.request_timeout_ms", "10000", W, false,
     "How long to wait for an answer frame before the request fails."},
    {"kone.call_timeout_ms", "30000", W, false,
     "How long an accepted call may stay without progress (e.g. stuck in 'created')."},
    {"kone.track_timeout_ms", "600000", W, false,
     "How long a tracked call is followed before giving up on 'served'."},
    {"kone.token_margin_s", "60", W, false,
     "Refresh the token this many seconds before it expires."},
    {"kone.keepalive_s", "30", W, false,
     "Ping an idle connection after this many seconds (KONE closes idle ones after 60 s)."},
    {"kone.max_conn_age_s", "6600", W, false,
     "Replace a connection after this many seconds (KONE closes every one after 2 h)."},
    {"kone.dns_ttl_s", "60", W, false,
     "How long the address kone.ws_url's host name resolved to is used for new connections "
     "(0-86400; 0: resolve for each). Resolved on a thread of its own, never on the KONE loop."},
    {"kone.monitor_duration_s", "300", W, false,
     "site-monitoring subscription length (max 300); renewed before it lapses."},
    {"kone.validate_locally", "true", W, false,
     "Check calls against each building group's cached configuration (common-api config and "
     "actions) before calling: a call KONE would refuse (unknown area, unknown or disabled action, "
     "no destination, same source and destination floor) is rejected with KONE's code, marked "
     "validated_locally, without a call (docs/kone-client.md)."},
    {"kone.config_ttl_s", "3600", W, false,
     "How long a building group's configuration is cached before it is fetched again (1-604800); a "
     "refusal that contradicts it makes it fetched again sooner."},
    {"kone.breaker_failure_rate", "80", W, false,
     "Circuit breaker per building: the share (%) of its calls failing for its link (1005: link "
     "down, no progress) over its window (kone.breaker_window_calls) that opens it (0: never "
     "opens). KONE's own trouble (5xx, 429, timeouts) never counts: it lowers the rate and "
     "concurrency instead (docs/failure-handling.md)."},
    {"kone.breaker_min_calls", "10", W, false,
     "Calls of a building (verdicts) its breaker's window must hold before their failure share may "
     "open it."},
    {"kone.breaker_window_calls", "20", W, false,
     "The breaker's sliding window: the last this many calls of a building (1-64), those older "
     "than kone.breaker_window_ms left out."},
    {"kone.breaker_window_ms", "60000", W, false,
     "Age limit of the verdicts in a building's breaker window."},
    {"kone.breaker_trial_calls", "5", W, false,
     "Calls admitted at once while a building's circuit is half-open (its ping answered); their "
     "failure share decides: kone.breaker_failure_rate or more opens it again, less closes it. "
     "Further calls wait for the decision."},
    {"kone.breaker_probe_base_ms", "1000", W, false,
     "First ping of a building whose circuit is open after this long; doubles (jittered) while "
     "pings fail."},
    {"kone.breaker_probe_cap_ms", "10000", W, false,
     "Longest delay between pings of a building whose circuit is open."},
    {"kone.concurrency_min", "4", W, false,
     "Adaptive concurrency (per building and for the worker, at most worker.inflight): the lowest "
     "number of KONE requests outstanding that 5xx, 429 and timeouts can drive the limit down to. "
     "Each answer raises the limit by one; jobs above it wait in the worker "
     "(docs/kone-client.md)."},
    {"kone.concurrency_decrease_pct", "90", W, false,
     "Adaptive concurrency: each 5xx, 429 or timeout multiplies the limit by this share (%); 100 "
     "keeps it at worker.inflight (adaptive concurrency off)."},
    {"kone.concurrency_building_max", "0", W, false,
     "Adaptive concurrency: the highest limit of one building (0: worker.inflight), so at most "
     "this many of its requests are out unanswered; when its site link goes down, at most this "
     "many of its calls are stuck (they end unknown: docs/failure-handling.md)."},
    {"kone.stall_probe_ms", "1000", W, false,
     "A building whose requests are out while none of them made progress (a call result, an "
     "answer) for this long is pinged; a ping failed with KONE's link-down error 1005 opens its "
     "circuit at once, and its stuck calls give up (0: only the breaker window decides; "
     "docs/failure-handling.md)."},
    {"kone.rate_slowdown_share", "50", W, false,
     "A building's request rate is halved when 429s make up this share (%) or more of its last "
     "answers (at least 32 of the last 64, within 30 s); 0: at every 429. Fewer 429s only lower "
     "the "
     "adaptive concurrency limit."},
    {"kone.rate_per_s", "0", W, false,
     "Rate limit per building, requests per second (0: none); 429s (kone.rate_slowdown_share) "
     "lower a building's rate for a while either way."},
    {"kone.rate_burst", "0", W, false,
     "Requests a building may get at once under its rate limit (0: one second's worth)."},

    /* producer */
    {"producer.confirm_timeout_ms", "10000", P, false,
     "How long to wait for the broker's publisher confirm."},

    /* kone-events */
    {"events.topic", "kone.call.results", E, false, "Topic to read (results, events or metrics)."},
    {"events.group", "", E, false,
     "Consumer group (empty: a fresh one, reading without committing)."},
    {"events.from_beginning", "true", E, false, "Start from the earliest offset."},
    {"events.max", "0", E, false, "Stop after this many events (0: no limit)."},
    {"events.idle_exit_ms", "0", E, false,
     "Exit after this long without a new event (0: run until interrupted)."},

    /* kone-sim */
    {"sim.listen", "127.0.0.1", S, false, "Address kone-sim listens on."},
    {"sim.port", "8443", S, false, "HTTPS/WSS port of kone-sim."},
    {"sim.cert", "", S, false, "PEM certificate of kone-sim (required)."},
    {"sim.key", "", S, false, "PEM private key of kone-sim (required)."},
    {"sim.buildings", "sim/buildings.json", S, false, "Buildings file (topology, actions, lifts)."},
    {"sim.clients", "sim/clients.json", S, false, "Client credentials and their scopes."},
    {"sim.speed", "1", S, false,
     "Clock speed-up of the lift model (10 = ten times faster than real time)."},
    {"sim.token_ttl_s", "3600", S, false, "Lifetime of the tokens kone-sim issues."},
    {"sim.idle_timeout_s", "60", S, false,
     "Close a WebSocket after this many idle seconds, as KONE does."},
    {"sim.max_token_buildings", "0", S, false,
     "A token request whose scopes name more buildings than this is refused 400 invalid_scope, as "
     "KONE caps the buildings of one token (0: no cap)."},
    {"sim.snapshot", "false", S, false,
     "Send a new site-monitoring subscriber the current call states and lift status at once. KONE "
     "documents no such snapshot, so it is off: on only to compare with the simulator's older, "
     "kinder behaviour."},
    {"sim.max_conn_s", "7200", S, false,
     "Close every WebSocket after this many seconds, as KONE does."},
    {"sim.faults", "", S, false,
     "Fault injection spec applied at start: the JSON that POST /sim/faults takes "
     "(docs/kone-sim.md)."},
    {"sim.control_token", "", S, true,
     "Bearer token the /sim/ control endpoint requires (secret; also KD_SIM_CONTROL_TOKEN_FILE; "
     "empty: no check)."},
    {"sim.token_log", "", S, false,
     "Test only: append every issued access token to this file (empty: off); lets a test search "
     "logs for leaked tokens."},
};

#undef W
#undef P
#undef S
#undef E

#define KD_NKEYS (sizeof kd_keys / sizeof kd_keys[0])

const kd_config_key *kd_config_table(size_t *n)
{
    *n = KD_NKEYS;
    return kd_keys;
}

static int key_index(const char *key)
{
    for (size_t i = 0; i < KD_NKEYS; i++)
        if (strcmp(kd_keys[i].name, key) == 0)
            return (int)i;
    return -1;
}

void kd_config_env_name(const char *key, char *buf, size_t len)
{
    size_t o = 0;
    const char *pre = "KD_";
    for (; *pre && o + 1 < len; pre++)
        buf[o++] = *pre;
    for (; *key && o + 1 < len; key++)
        buf[o++] = (*key == '.') ? '_' : (char)toupper((unsigned char)*key);
    buf[o] = '\0';
}

void kd_config_flag_name(const char *key, char *buf, size_t len)
{
    size_t o = 0;
    if (len > 2) {
        buf[o++] = '-';
        buf[o++] = '-';
    }
    for (; *key && o + 1 < len; key++)
        buf[o++] = (*key == '.' || *key == '_') ? '-' : *key;
    buf[o] = '\0';
}

static int set_value(kd_config *cfg, int i, const char *v)
{
    char *dup = strdup(v);
    if (!dup)
        return KD_ERR_NOMEM;
    free(cfg->values[i]);
    cfg->values[i] = dup;
    return 0;
}

/* Reads a secret file; strips one trailing newline. The path may be named in errors,
 * the content never. */
static int read_secret_file(const char *key, const char *path, char **out, kd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kd_err_set(err, KD_ERR_INVALID, "%s: cannot read file %s: %s", key, path,
                          kd_strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *out = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    return *out ? 0 : KD_ERR_NOMEM;
}

static int set_from_file(kd_config *cfg, int i, const char *path, kd_err *err)
{
    char *v = NULL;
    int rc = read_secret_file(kd_keys[i].name, path, &v, err);
    if (rc)
        return rc;
    free(cfg->values[i]);
    cfg->values[i] = v;
    return 0;
}

/* Finds the key whose flag is `name` (without "--"); *is_file tells whether it was the
 * -file variant of a secret key. */
static int flag_index(const char *name, size_t nlen, bool *is_file)
{
    char flag[128];
    for (size_t i = 0; i < KD_NKEYS; i++) {
        kd_config_flag_name(kd_keys[i].name, flag, sizeof flag);
        size_t fl = strlen(flag + 2);
        if (fl == nlen && memcmp(flag + 2, name, nlen) == 0) {
            *is_file = false;
            return (int)i;
        }
        if (kd_keys[i].secret && nlen == fl + 5 && memcmp(flag + 2, name, fl) == 0 &&
            memcmp(name + fl, "-file", 5) == 0) {
            *is_file = true;
            return (int)i;
        }
    }
    return -1;
}

int kd_config_load(kd_config *cfg, unsigned prog, const char *prog_name, int argc, char **argv,
                   kd_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->prog = prog;
    cfg->prog_name = prog_name;
    cfg->values = calloc(KD_NKEYS, sizeof *cfg->values);
    if (!cfg->values)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < KD_NKEYS && !rc; i++) {
        char env[128];
        kd_config_env_name(kd_keys[i].name, env, sizeof env);
        // NOLINTNEXTLINE(concurrency-mt-unsafe): read at start-up, before any thread starts
        const char *v = getenv(env);
        rc = set_value(cfg, (int)i, v ? v : kd_keys[i].def);
        if (!rc && kd_keys[i].secret) {
            char envf[160];
            snprintf(envf, sizeof envf, "%s_FILE", env);
            // NOLINTNEXTLINE(concurrency-mt-unsafe): at start-up too, like the line above
            const char *path = getenv(envf);
            if (path && *path)
                rc = set_from_file(cfg, (int)i, path, err);
        }
    }
    if (rc)
        goto fail;

    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->help = true;
            continue;
        }
        if (strcmp(arg, "--config-table") == 0 || strcmp(arg, "--config-dump") == 0) {
            /* remembered as positional marker for kd_config_common_actions */
            if (cfg->nargs < KD_CONFIG_MAX_ARGS)
                cfg->args[cfg->nargs++] = argv[a];
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (strcmp(arg, "--") == 0) {
                for (a++; a < argc && cfg->nargs < KD_CONFIG_MAX_ARGS; a++)
                    cfg->args[cfg->nargs++] = argv[a];
                break;
            }
            if (cfg->nargs >= KD_CONFIG_MAX_ARGS) {
                rc = kd_err_set(err, KD_ERR_INVALID, "too many arguments");
                goto fail;
            }
            cfg->args[cfg->nargs++] = argv[a];
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        bool is_file = false;
        int i = flag_index(name, nlen, &is_file);
        if (i < 0 || !(kd_keys[i].progs & prog)) {
            rc = kd_err_set(err, KD_ERR_INVALID, "%s: unknown option --%.*s (see --help)",
                            prog_name, (int)nlen, name);
            goto fail;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (a + 1 < argc) {
            val = argv[++a];
        } else {
            rc = kd_err_set(err, KD_ERR_INVALID, "%s: option --%.*s needs a value", prog_name,
                            (int)nlen, name);
            goto fail;
        }
        rc = is_file ? set_from_file(cfg, i, val, err) : set_value(cfg, i, val);
        if (rc)
            goto fail;
    }
    return 0;
fail:
    if (rc == KD_ERR_NOMEM)
        kd_err_set(err, rc, "out of memory");
    kd_config_free(cfg);
    return rc;
}

void kd_config_free(kd_config *cfg)
{
    if (!cfg->values)
        return;
    for (size_t i = 0; i < KD_NKEYS; i++) {
        if (cfg->values[i] && kd_keys[i].secret)
            explicit_bzero(cfg->values[i], strlen(cfg->values[i]));
        free(cfg->values[i]);
    }
    free(cfg->values);
    cfg->values = NULL;
}

const char *kd_config_get(const kd_config *cfg, const char *key)
{
    int i = key_index(key);
    if (i < 0) {
        fprintf(stderr, "kd_config_get: unknown key %s (programming error)\n", key);
        abort();
    }
    return cfg->values[i];
}

int kd_config_set(kd_config *cfg, const char *key, const char *value)
{
    int i = key_index(key);
    if (i < 0)
        return KD_ERR_INVALID;
    return set_value(cfg, i, value);
}

int kd_config_int(const kd_config *cfg, const char *key, int64_t min, int64_t max, int64_t *out,
                  kd_err *err)
{
    const char *v = kd_config_get(cfg, key);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max)
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be an integer in %lld..%lld, got '%s'",
                          key, (long long)min, (long long)max, v);
    *out = n;
    return 0;
}

int kd_config_double(const kd_config *cfg, const char *key, double min, double max, double *out,
                     kd_err *err)
{
    const char *v = kd_config_get(cfg, key);
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end != '\0' || d < min || d > max)
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be a number in %g..%g, got '%s'", key, min,
                          max, v);
    *out = d;
    return 0;
}

int kd_config_bool(const kd_config *cfg, const char *key, bool *out, kd_err *err)
{
    const char *v = kd_config_get(cfg, key);
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) {
        *out = false;
        return 0;
    }
    return kd_err_set(err, KD_ERR_INVALID, "%s: must be true or false, got '%s'", key, v);
}

static const char *prog_list(unsigned progs, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {KD_PROG_WORKER, "worker"},
        {KD_PROG_PRODUCER, "producer"},
        {KD_PROG_SIM, "sim"},
        {KD_PROG_EVENTS, "events"},
    };
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(progs & names[i].bit))
            continue;
        if (buf[0])
            strncat(buf, ", ", len - strlen(buf) - 1);
        strncat(buf, names[i].name, len - strlen(buf) - 1);
    }
    return buf;
}

void kd_config_print_help(const kd_config *cfg, FILE *out)
{
    fprintf(out, "Options of %s (each also set by its environment variable):\n", cfg->prog_name);
    for (size_t i = 0; i < KD_NKEYS; i++) {
        if (!(kd_keys[i].progs & cfg->prog))
            continue;
        char env[128], flag[128];
        kd_config_env_name(kd_keys[i].name, env, sizeof env);
        kd_config_flag_name(kd_keys[i].name, flag, sizeof flag);
        fprintf(out, "  %-28s %-32s default '%s'\n      %s\n", flag, env,
                kd_keys[i].secret ? "" : kd_keys[i].def, kd_keys[i].help);
    }
    fprintf(out,
            "  --config-table                   print every key as a markdown table\n"
            "  --config-dump                    print the effective values (secrets hidden)\n");
}

void kd_config_print_markdown(FILE *out)
{
    fprintf(out, "| key | environment | flag | default | programs | meaning |\n");
    fprintf(out, "| --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < KD_NKEYS; i++) {
        char env[128], flag[128], progs[64];
        kd_config_env_name(kd_keys[i].name, env, sizeof env);
        kd_config_flag_name(kd_keys[i].name, flag, sizeof flag);
        fprintf(out, "| `%s` | `%s` | `%s` | `%s` | %s | %s |\n", kd_keys[i].name, env, flag,
                kd_keys[i].def, prog_list(kd_keys[i].progs, progs, sizeof progs), kd_keys[i].help);
    }
}

bool kd_config_common_actions(const kd_config *cfg, int *code)
{
    if (cfg->help) {
        kd_config_print_help(cfg, stdout);
        *code = 0;
        return true;
    }
    for (int a = 0; a < cfg->nargs; a++) {
        if (strcmp(cfg->args[a], "--config-table") == 0) {
            kd_config_print_markdown(stdout);
            *code = 0;
            return true;
        }
        if (strcmp(cfg->args[a], "--config-dump") == 0) {
            for (size_t i = 0; i < KD_NKEYS; i++)
                if (kd_keys[i].progs & cfg->prog)
                    printf("%s=%s\n", kd_keys[i].name,
                           kd_keys[i].secret ? (cfg->values[i][0] ? "<set>" : "") : cfg->values[i]);
            *code = 0;
            return true;
        }
    }
    return false;
}
