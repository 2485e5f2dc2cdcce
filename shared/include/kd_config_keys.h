/**
 * @file kd_config_keys.h
 * @brief The configuration table: one KD_KEY row per key (an X-macro list).
 *
 * Deliberately no include guard: kd_config.h includes it to make the key ids
 * (KD_CFG_AMQP_PORT ...) and config.c includes it to make the table, each with its own
 * definition of KD_KEY. Everything else is generated from these rows: loading and
 * validation at start, --help, --config-dump, --config-table and so docs/configuration.md.
 *
 * A row:  KD_KEY(ID, "name", TYPE, MIN, MAX, CHOICES, "default", PROGRAMS, SECRET, "help")
 *   ID        KD_CFG_<ID> is the key's id; by convention the name in capitals, dots as _.
 *   TYPE      STR (any text; lists are parsed by their module), INT, DOUBLE, BOOL
 *             (true/false, 1/0, yes/no), ENUM (one of CHOICES, exactly as written),
 *             ENUMI (one of CHOICES in any case: for values handed to librdkafka as they are),
 *             MS, S, H (durations: an integer count of milliseconds, seconds, hours).
 *   MIN, MAX  inclusive bounds of INT, DOUBLE and the durations (0, 0 for the others).
 *   CHOICES   "a|b|c" for ENUM, NULL otherwise.
 *   PROGRAMS  W (kone-worker), P (kone-producer), S (kone-sim), E (kone-events), or'ed.
 *   SECRET    1: never printed (--help, --config-dump, errors); also read from a _FILE.
 * Adding a key is adding one row here (then regenerate docs/configuration.md and the
 * chart schema: see docs/configuration.md, "Adding a key").
 *
 * The bounds are the only ones: callers read validated typed values (kd_cfg_int ...).
 * Bounds named by a constant are those other code also relies on (buffers, rings).
 */
#ifndef KD_KEY
#error "define KD_KEY(id, name, type, min, max, choices, def, progs, secret, help) first"
#endif

/** @cond KD_CONFIG_ROWS (rows, not declarations: Doxygen leaves them out) */

/* common */
KD_KEY(LOG_LEVEL, "log.level", ENUM, 0, 0, "debug|info|warn|error", "info", W | P | S | E, 0,
       "Log level: debug, info, warn, error.")
/* RabbitMQ */
KD_KEY(AMQP_HOST, "amqp.host", STR, 0, 0, NULL, "127.0.0.1", W | P, 0,
       "RabbitMQ host, or a comma-separated list of cluster nodes ([amqps://|amqp://]host[:port]); "
       "after a lost connection the next node is tried first. An amqps:// or amqp:// prefix turns "
       "TLS on or off for that node whatever amqp.tls says (default port 5671 or 5672).")
KD_KEY(AMQP_PORT, "amqp.port", INT, 1, 65535, NULL, "5671", W | P, 0,
       "RabbitMQ port of nodes named without one (5671: AMQPS; plain AMQP is usually 5672).")
KD_KEY(AMQP_VHOST, "amqp.vhost", STR, 0, 0, NULL, "/", W | P, 0, "RabbitMQ virtual host.")
KD_KEY(AMQP_USER, "amqp.user", STR, 0, 0, NULL, "guest", W | P, 0, "RabbitMQ user name.")
KD_KEY(AMQP_PASSWORD, "amqp.password", STR, 0, 0, NULL, "guest", W | P, 1,
       "RabbitMQ password (secret; also KD_AMQP_PASSWORD_FILE).")
/* RabbitMQ TLS (shared/src/amqp_tls.c, docs/security.md#transport-security) */
KD_KEY(AMQP_TLS, "amqp.tls", BOOL, 0, 0, NULL, "true", W | P, 0,
       "Connect to RabbitMQ over TLS (AMQPS), the broker's certificate and host name verified. "
       "false: plain AMQP, the password and every job in clear (a warning at every start).")
KD_KEY(AMQP_CA_FILE, "amqp.ca_file", STR, 0, 0, NULL, "", W | P, 0,
       "PEM CA bundle that verifies RabbitMQ's certificate (empty: the system CAs).")
KD_KEY(AMQP_CERT_FILE, "amqp.cert_file", STR, 0, 0, NULL, "", W | P, 0,
       "PEM client certificate for RabbitMQ (mutual TLS; empty: none). Needs amqp.key_file.")
KD_KEY(AMQP_KEY_FILE, "amqp.key_file", STR, 0, 0, NULL, "", W | P, 0,
       "Unencrypted PEM private key of amqp.cert_file (keep it 0400).")
KD_KEY(
    AMQP_TLS_INSECURE, "amqp.tls_insecure", BOOL, 0, 0, NULL, "false", W | P, 0,
    "INSECURE, for diagnosis only: accept any certificate and host name from RabbitMQ (anyone on "
    "the path can read and forge jobs). Logs a warning at every start.")
KD_KEY(AMQP_HEARTBEAT_S, "amqp.heartbeat_s", S, 0, 3600, NULL, "10", W | P, 0,
       "AMQP heartbeat interval in seconds (0 disables; keep it on so a dead network is noticed).")
KD_KEY(AMQP_EXCHANGE, "amqp.exchange", STR, 0, 0, NULL, "kone.calls", W | P, 0,
       "Durable direct exchange jobs are published to.")
KD_KEY(AMQP_QUEUE, "amqp.queue", STR, 0, 0, NULL, "kone.calls", W | P, 0,
       "Quorum work queue bound to the exchange; the worker consumes it.")
KD_KEY(AMQP_ROUTING_KEY, "amqp.routing_key", STR, 0, 0, NULL, "kone.calls", W | P, 0,
       "Routing key binding the work queue to the exchange.")
KD_KEY(AMQP_RETRY_EXCHANGE, "amqp.retry_exchange", STR, 0, 0, NULL, "", W | P, 0,
       "Direct exchange of the retry tiers (empty: {amqp.queue}.retry); tier queues are "
       "{amqp.queue}.retry.{ms}, one per retry.tiers_ms entry.")
KD_KEY(AMQP_DEAD_EXCHANGE, "amqp.dead_exchange", STR, 0, 0, NULL, "", W | P, 0,
       "Direct exchange of the dead-letter queue (empty: {amqp.queue}.dead).")
KD_KEY(AMQP_DEAD_QUEUE, "amqp.dead_queue", STR, 0, 0, NULL, "", W | P, 0,
       "Quorum dead-letter queue, the parking lot of undecodable and finally failed jobs (empty: "
       "{amqp.queue}.dead).")
KD_KEY(AMQP_DELIVERY_LIMIT, "amqp.delivery_limit", INT, 1, KD_AMQP_DELIVERY_LIMIT_MAX, NULL, "20",
       W | P, 0,
       "x-delivery-limit of the work queue: the broker parks a job returned more than this many "
       "times in the dead-letter queue (RabbitMQ 4.x would drop it after 20). The backstop behind "
       "worker.max_deliveries, which must stay below it. A queue made without it is used as it is, "
       "with a warning (RUNBOOK.md).")
KD_KEY(AMQP_CONSUMER_TIMEOUT_MS, "amqp.consumer_timeout_ms", MS, 0,
       KD_LIMITS_CONSUMER_TIMEOUT_MAX_MS, NULL, "1800000", W, 0,
       "RabbitMQ's consumer_timeout as the broker has it (0: none): a delivery unacked that long "
       "closes the channel. The worker refuses to start when its settings let it hold a delivery "
       "longer (docs/failure-handling.md, Broker limits).")
/* jobs */
KD_KEY(JOB_DEFAULT_TTL_MS, "job.default_ttl_ms", MS, 1, INT64_MAX / 2, NULL, "60000", W | P, 0,
       "Deadline of a job that has none: created_at plus this many ms.")
KD_KEY(JOB_MAX_AGE_MS, "job.max_age_ms", MS, 0, KD_LIMITS_MAX_AGE_MAX_MS, NULL, "600000", W, 0,
       "A job's deadline is lowered to at most created_at plus this many ms (0: no cap).")
/* worker */
KD_KEY(WORKER_ID, "worker.id", STR, 0, 0, NULL, "", W, 0,
       "Worker name in result events (default: host name and pid).")
KD_KEY(
    WORKER_INFLIGHT, "worker.inflight", INT, 1, 65535, NULL, "256", W, 0,
    "Jobs one worker holds at once; also the AMQP prefetch. A job holds its place from delivery "
    "until its outcome is recorded and acked: waiting for KONE room, at KONE, following its call "
    "to the decisive state, recording the result; the KONE requests among them are capped by "
    "kone.concurrency_max.")
KD_KEY(WORKER_DRAIN_MS, "worker.drain_ms", MS, 0, 3600000, NULL, "10000", W, 0,
       "On SIGTERM, how long to wait for in-flight jobs before handing them back.")
KD_KEY(
    WORKER_MAX_DELIVERIES, "worker.max_deliveries", INT, 0, 1000000, NULL, "10", W, 0,
    "A job handed out this many times without an outcome (each time its worker crashed, was "
    "killed or lost its connection) is parked in the dead-letter queue with outcome failed, error "
    "delivery_limit, without a call (0: never).")
KD_KEY(WORKER_TIMINGS_FILE, "worker.timings_file", STR, 0, 0, NULL, "", W, 0,
       "Diagnostics (scripts/bench): append one line per acked delivery to this file: received, "
       "request sent, outcome known, result produced, acked, in µs since the epoch, then the "
       "building, the outcome, final or requeue, the µs its ledger claim and outcome record "
       "waited for PostgreSQL, and the µs KONE's admission (concurrency limit, rate limit) held "
       "its request back (empty: off).")
/* call ledger (PostgreSQL) */
KD_KEY(LEDGER_URL, "ledger.url", STR, 0, 0, NULL,
       "postgresql://kd@127.0.0.1:5432/kone_dispatch?sslmode=verify-full", W, 1,
       "Call ledger: a libpq connection URI "
       "(postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=...), or none to "
       "run without a ledger (duplicate calls become possible; a warning at every start). It may "
       "carry the password (secret; also KD_LEDGER_URL_FILE).")
KD_KEY(LEDGER_AMBIGUOUS, "ledger.ambiguous", ENUM, 0, 0, "unknown|retry", "unknown", W, 0,
       "A job whose call was written but never answered (its worker died): unknown (default: final "
       "outcome unknown, never called twice) or retry (call it again: a second elevator call is "
       "possible).")
KD_KEY(
    LEDGER_LEASE_MS, "ledger.lease_ms", MS, 1000, 3600000, NULL, "15000", W, 0,
    "How long a worker's claim on a job stays valid without being renewed (renewed every third of "
    "it while the worker lives); a redelivered job whose claim is still leased waits for it.")
KD_KEY(LEDGER_RETENTION_H, "ledger.retention_h", H, 1, 24 * 365, NULL, "168", W, 0,
       "Ledger rows expire this many hours after their job ended; expired rows are purged by the "
       "workers (about once a minute).")
KD_KEY(LEDGER_TIMEOUT_MS, "ledger.timeout_ms", MS, 100, 600000, NULL, "5000", W, 0,
       "Connecting to the ledger, and any ledger statement, gives up after this long (and a "
       "connection whose sent data goes unacknowledged this long is dropped); the worker then "
       "stops taking jobs until the ledger answers again.")
/* retries */
KD_KEY(RETRY_BASE_MS, "retry.base_ms", MS, 1, KD_RETRY_TIER_MAX_MS, NULL, "1000", W, 0,
       "Backoff base: the delay before attempt n+1 is uniform in [0, min(cap, base * 2^(n-1))] ms "
       "(full jitter).")
KD_KEY(RETRY_CAP_MS, "retry.cap_ms", MS, 1, KD_RETRY_TIER_MAX_MS, NULL, "30000", W, 0,
       "Backoff cap in ms.")
KD_KEY(RETRY_MAX_ATTEMPTS, "retry.max_attempts", INT, 1, KD_RETRY_MAX_ATTEMPTS, NULL, "5", W, 0,
       "Attempts per job (1 = no retry); after the last, outcome failed and the job goes to the "
       "dead-letter queue.")
KD_KEY(RETRY_MAX_REQUEUES, "retry.max_requeues", INT, 0, 1000000, NULL, "20", W, 0,
       "Trips through a retry tier per job (x-kd-requeues: retries, and jobs parked while their "
       "building's circuit is open); a job re-queued this often already ends failed, error "
       "requeue_limit, in the dead-letter queue (expired when its deadline passed). 0: no limit.")
KD_KEY(RETRY_TIERS_MS, "retry.tiers_ms", STR, 0, 0, NULL, "1000,2000,5000,10000,30000", W | P, 0,
       "Delays of the retry tier queues (ascending ms); a drawn delay is rounded up to a tier.")
/* Kafka */
KD_KEY(KAFKA_BROKERS, "kafka.brokers", STR, 0, 0, NULL, "127.0.0.1:9094", W | E, 0,
       "Kafka bootstrap servers (the default is the dev stack's SSL listener, matching the default "
       "kafka.security_protocol).")
/* Kafka TLS and SASL (shared/src/kafka_security.c, docs/security.md#transport-security) */
KD_KEY(KAFKA_SECURITY_PROTOCOL, "kafka.security_protocol", ENUM, 0, 0, "ssl|sasl_ssl|plaintext",
       "ssl", W | E, 0,
       "How to reach Kafka: ssl (TLS, the broker's certificate and host name verified; a client "
       "certificate with kafka.cert_file), sasl_ssl (TLS plus SASL SCRAM login) or plaintext "
       "(everything in clear: a warning at every start).")
KD_KEY(KAFKA_CA_FILE, "kafka.ca_file", STR, 0, 0, NULL, "", W | E, 0,
       "PEM CA bundle that verifies the Kafka brokers' certificates (empty: the system CAs).")
KD_KEY(KAFKA_CERT_FILE, "kafka.cert_file", STR, 0, 0, NULL, "", W | E, 0,
       "PEM client certificate for Kafka (mutual TLS; empty: none). Needs kafka.key_file.")
KD_KEY(KAFKA_KEY_FILE, "kafka.key_file", STR, 0, 0, NULL, "", W | E, 0,
       "Unencrypted PEM private key of kafka.cert_file (keep it 0400).")
KD_KEY(KAFKA_SASL_MECHANISM, "kafka.sasl_mechanism", ENUM, 0, 0, "SCRAM-SHA-512|SCRAM-SHA-256",
       "SCRAM-SHA-512", W | E, 0,
       "SASL mechanism with kafka.security_protocol sasl_ssl: SCRAM-SHA-512 or SCRAM-SHA-256.")
KD_KEY(KAFKA_SASL_USER, "kafka.sasl_user", STR, 0, 0, NULL, "", W | E, 0,
       "SASL user name with kafka.security_protocol sasl_ssl.")
KD_KEY(KAFKA_SASL_PASSWORD, "kafka.sasl_password", STR, 0, 0, NULL, "", W | E, 1,
       "SASL password of kafka.sasl_user (secret; also KD_KAFKA_SASL_PASSWORD_FILE).")
KD_KEY(KAFKA_TOPIC_RESULTS, "kafka.topic_results", STR, 0, 0, NULL, "kone.call.results", W | E, 0,
       "Topic of job results (one per job).")
KD_KEY(KAFKA_TOPIC_EVENTS, "kafka.topic_events", STR, 0, 0, NULL, "kone.call.events", W | E, 0,
       "Topic of call-state events of tracked calls.")
KD_KEY(KAFKA_LINGER_MS, "kafka.linger_ms", MS, 0, 900000, NULL, "5", W, 0,
       "librdkafka linger.ms: how long to batch results before sending. A job is acked when "
       "its result is delivered, so up to this much later, and it holds its worker.inflight "
       "place that long; a longer wait means fewer, larger produce requests. 5, 10 and 20 cost "
       "the same CPU per job at full load (docs/performance.md).")
KD_KEY(KAFKA_COMPRESSION, "kafka.compression", ENUMI, 0, 0, "none|gzip|snappy|lz4|zstd", "lz4", W,
       0,
       "librdkafka compression.codec for results and events: none, gzip, snappy, lz4 or zstd. lz4 "
       "by default: at full load a produce request then goes out as one TLS record, not about one "
       "per message (-6k instructions a job); at low load a batch of one costs the codec's set-up, "
       "where CPU is idle anyway (docs/performance.md).")
KD_KEY(KAFKA_QUEUE_MAX_MESSAGES, "kafka.queue_max_messages", INT, 1, 10000000, NULL, "100000", W, 0,
       "librdkafka queue.buffering.max.messages: results and events held locally until Kafka "
       "acknowledges them. When it is full, a result waits up to 2 s for room, then its job is "
       "handed back (docs/failure-handling.md).")
KD_KEY(KAFKA_MAX_UNDELIVERED, "kafka.max_undelivered", INT, 1, 10000000, NULL, "1000", W, 0,
       "Backpressure: stop taking jobs while more results than this wait for Kafka; resume below "
       "half.")
KD_KEY(KAFKA_TOPIC_METRICS, "kafka.topic_metrics", STR, 0, 0, NULL, "kone.worker.metrics", W, 0,
       "Topic of the worker's metric snapshots (docs/events.md); see metrics.kafka_interval_ms.")
/* metrics and health endpoint */
KD_KEY(METRICS_LISTEN, "metrics.listen", STR, 0, 0, NULL, "0.0.0.0", W, 0,
       "Address of the /metrics, /healthz and /readyz HTTP endpoint (docs/metrics.md). 0.0.0.0 so "
       "that Prometheus and the kubelet reach it in a pod (the chart's NetworkPolicy limits who "
       "may); 127.0.0.1 where the scraper runs on the same machine (deploy/systemd).")
KD_KEY(METRICS_PORT, "metrics.port", INT, -1, 65535, NULL, "9464", W, 0,
       "Port of the metrics endpoint; 0 picks a free port (logged), -1 turns the endpoint off.")
KD_KEY(METRICS_BUILDINGS, "metrics.buildings", STR, 0, 0, NULL, "", W, 0,
       "Comma-separated building ids that get their own `building` label value; any other building "
       "is counted as 'other'.")
KD_KEY(METRICS_KAFKA_INTERVAL_MS, "metrics.kafka_interval_ms", MS, 0, INT64_MAX / 1000, NULL,
       "60000", W, 0, "Publish a metrics snapshot to kafka.topic_metrics this often (0: never).")
KD_KEY(METRICS_MAX_CONNECTIONS, "metrics.max_connections", INT, 1, 65536, NULL, "256", W, 0,
       "Open connections the metrics endpoint accepts in all; more are closed at once.")
KD_KEY(
    METRICS_MAX_CONNECTIONS_PER_IP, "metrics.max_connections_per_ip", INT, 1, 65536, NULL, "8", W,
    0,
    "Open connections the metrics endpoint accepts from one client address (so one address cannot "
    "starve the probes); at most metrics.max_connections. Raise it where every client comes "
    "through one proxy address (a service-mesh sidecar).")
KD_KEY(METRICS_HEALTH_STALE_MS, "metrics.health_stale_ms", MS, 1, INT64_MAX / 1000, NULL, "30000",
       W, 0, "/healthz fails when the main loop has not turned for this long.")
/* KONE API */
KD_KEY(KONE_TOKEN_URL, "kone.token_url", STR, 0, 0, NULL,
       "https://127.0.0.1:8443/api/v2/oauth2/token", W, 0, "OAuth2 token endpoint.")
KD_KEY(KONE_WS_URL, "kone.ws_url", STR, 0, 0, NULL, "wss://127.0.0.1:8443/stream-v2", W, 0,
       "WebSocket endpoint (stream-v2).")
KD_KEY(KONE_CLIENT_ID, "kone.client_id", STR, 0, 0, NULL, "", W, 0, "KONE application client id.")
KD_KEY(KONE_CLIENT_SECRET, "kone.client_secret", STR, 0, 0, NULL, "", W, 1,
       "KONE application client secret (secret; also KD_KONE_CLIENT_SECRET_FILE).")
KD_KEY(KONE_SCOPE, "kone.scope", STR, 0, 0, NULL, "", W, 0,
       "Space-separated scopes to request, e.g. 'callgiving/building:9990000951' (empty: one "
       "callgiving/building:<id> scope per kone.buildings entry, or the application's default when "
       "that is empty too).")
KD_KEY(
    KONE_LIFT_MODES_REFUSED, "kone.lift_modes_refused", STR, 0, 0, NULL, "-1:OSS,3:ATS,5:PRC,9:FRD",
    W, 0,
    "lift_mode codes (monitor-lift-status) in which a group is not called, as code:NAME pairs. "
    "KONE's spec documents only -1 (out of service); 3, 5 and 9 are kone-sim's codes for "
    "attendant, priority and fire mode: confirm your site's codes with KONE. A group whose every "
    "reporting lift is in one of these modes gets its calls rejected group_mode, not sent.")
KD_KEY(
    KONE_GROUP_MODE_POLICY, "kone.group_mode_policy", ENUM, 0, 0, "reject|hold", "reject", W, 0,
    "What a call for a group in a refused mode (kone.lift_modes_refused) gets: 'reject' (rejected "
    "group_mode, final) or 'hold' (failed transient group_mode_held: re-queued through the retry "
    "tiers without using an attempt, like circuit_open, and called once the mode clears; expired "
    "when its deadline leaves no time, the last error naming the mode).")
KD_KEY(KONE_ROBOTCALL_BUILDINGS, "kone.robotcall_buildings", STR, 0, 0, NULL, "", W, 0,
       "Buildings served with robot calls: each gets a robotcall/building:<id> scope instead of "
       "callgiving (KONE's scope for 'robot' type calls). Space- or comma-separated ids; they are "
       "served like kone.buildings entries (added to that list when missing).")
KD_KEY(KONE_DISCOVER_BUILDINGS, "kone.discover_buildings", BOOL, 0, 0, NULL, "false", W, 0,
       "When kone.buildings, kone.robotcall_buildings and kone.scope are empty: at start, ask KONE "
       "for the application's buildings (GET /api/v2/application/self/resources with an "
       "application/inventory token, on kone.token_url's host) and serve those, with a callgiving "
       "scope each (split over tokens by kone.buildings_per_token). The worker does not start when "
       "the list cannot be had.")
KD_KEY(
    KONE_BUILDINGS_PER_TOKEN, "kone.buildings_per_token", INT, 0, 100000, NULL, "0", W, 0,
    "At most this many buildings' scopes in one token (KONE's limit for your application; 0: no "
    "limit). When kone.buildings lists more, the worker holds one token per share of them, each "
    "with its own connections (kone.connections must be at least the number of tokens), and sends "
    "each building's jobs on its token's connections.")
KD_KEY(
    KONE_BUILDINGS, "kone.buildings", STR, 0, 0, NULL, "", W, 0,
    "Buildings this worker serves, space- or comma-separated ids (9990000951 or "
    "building:9990000951). Gives the default kone.scope (callgiving per building), the building a "
    "connection that has made no call yet pings to stay open (without one, KONE may close it "
    "after ~60 s idle and it is reopened), and, when set, the only buildings served: a job for "
    "another building is rejected `scope` before any call (KONE would answer 403).")
KD_KEY(KONE_CA_FILE, "kone.ca_file", STR, 0, 0, NULL, "", W, 0,
       "CA bundle to verify KONE's certificate (empty: the system CAs). Verification is always on.")
KD_KEY(KONE_CONNECTIONS, "kone.connections", INT, 1, KD_CONFIG_KONE_MAX_CONNECTIONS, NULL, "2", W,
       0,
       "WebSocket connections in the pool; buildings and groups are spread over them (the calls of "
       "one stay on the connection subscribed to its call states).")
KD_KEY(KONE_REQUEST_TIMEOUT_MS, "kone.request_timeout_ms", MS, 100, 600000, NULL, "10000", W, 0,
       "How long to wait for an answer frame before the request fails.")
KD_KEY(KONE_CALL_TIMEOUT_MS, "kone.call_timeout_ms", MS, 100, 3600000, NULL, "30000", W, 0,
       "How long an accepted call may stay without progress (e.g. stuck in 'created').")
KD_KEY(KONE_TRACK_TIMEOUT_MS, "kone.track_timeout_ms", MS, 100, 86400000, NULL, "600000", W, 0,
       "How long a tracked call is followed before giving up on 'served'.")
KD_KEY(KONE_TOKEN_MARGIN_S, "kone.token_margin_s", S, 0, 86400, NULL, "60", W, 0,
       "Refresh the token this many seconds before it expires.")
KD_KEY(KONE_KEEPALIVE_S, "kone.keepalive_s", S, 1, 3600, NULL, "30", W, 0,
       "Ping an idle connection after this many seconds (KONE closes idle ones after 60 s).")
KD_KEY(KONE_MAX_CONN_AGE_S, "kone.max_conn_age_s", S, 5, 86400, NULL, "6600", W, 0,
       "Replace a connection after this many seconds (KONE closes every one after 2 h).")
KD_KEY(KONE_DNS_TTL_S, "kone.dns_ttl_s", S, 0, 86400, NULL, "60", W, 0,
       "How long the address kone.ws_url's host name resolved to is used for new connections "
       "(0-86400; 0: resolve for each). Resolved on a thread of its own, never on the KONE loop.")
KD_KEY(KONE_MONITOR_DURATION_S, "kone.monitor_duration_s", S, 1, 300, NULL, "300", W, 0,
       "site-monitoring subscription length (max 300); renewed before it lapses.")
KD_KEY(
    KONE_VALIDATE_LOCALLY, "kone.validate_locally", BOOL, 0, 0, NULL, "true", W, 0,
    "Check calls against each building group's cached configuration (common-api config and "
    "actions) before calling: a call KONE would refuse (unknown area, unknown or disabled action, "
    "no destination, same source and destination floor) is rejected with KONE's code, marked "
    "validated_locally, without a call (docs/kone-client.md).")
KD_KEY(
    KONE_CONFIG_TTL_S, "kone.config_ttl_s", S, 1, 604800, NULL, "3600", W, 0,
    "How long a building group's configuration is cached before it is fetched again (1-604800); a "
    "refusal that contradicts it makes it fetched again sooner.")
KD_KEY(KONE_BREAKER_FAILURE_RATE, "kone.breaker_failure_rate", INT, 0, 100, NULL, "80", W, 0,
       "Circuit breaker per building: the share (%) of its calls failing for its link (1005: link "
       "down, no progress) over its window (kone.breaker_window_calls) that opens it (0: never "
       "opens). KONE's own trouble (5xx, 429, timeouts) never counts: it lowers the rate and "
       "concurrency instead (docs/failure-handling.md).")
KD_KEY(
    KONE_BREAKER_MIN_CALLS, "kone.breaker_min_calls", INT, 1, 100000, NULL, "10", W, 0,
    "Calls of a building (verdicts) its breaker's window must hold before their failure share may "
    "open it.")
KD_KEY(KONE_BREAKER_WINDOW_CALLS, "kone.breaker_window_calls", INT, 1, KD_CONFIG_KONE_BREAKER_RING,
       NULL, "20", W, 0,
       "The breaker's sliding window: the last this many calls of a building (1-64), those older "
       "than kone.breaker_window_ms left out.")
KD_KEY(KONE_BREAKER_WINDOW_MS, "kone.breaker_window_ms", MS, 100, 3600000, NULL, "60000", W, 0,
       "Age limit of the verdicts in a building's breaker window.")
KD_KEY(KONE_BREAKER_TRIAL_CALLS, "kone.breaker_trial_calls", INT, 1, 1000, NULL, "5", W, 0,
       "Calls admitted at once while a building's circuit is half-open (its ping answered); their "
       "failure share decides: kone.breaker_failure_rate or more opens it again, less closes it. "
       "Further calls wait for the decision.")
KD_KEY(KONE_BREAKER_PROBE_BASE_MS, "kone.breaker_probe_base_ms", MS, 10, 3600000, NULL, "1000", W,
       0,
       "First ping of a building whose circuit is open after this long; doubles (jittered) while "
       "pings fail.")
KD_KEY(KONE_BREAKER_PROBE_CAP_MS, "kone.breaker_probe_cap_ms", MS, 10, 3600000, NULL, "10000", W, 0,
       "Longest delay between pings of a building whose circuit is open.")
KD_KEY(KONE_CONCURRENCY_MAX, "kone.concurrency_max", INT, 1, 65535, NULL, "64", W, 0,
       "Adaptive concurrency: the most KONE requests the worker has outstanding (sent, not yet "
       "answered) at once, where its limit starts and the highest it climbs back to (at most "
       "worker.inflight). The jobs a worker holds beyond it wait in the worker or follow calls "
       "already answered (docs/kone-client.md).")
KD_KEY(
    KONE_CONCURRENCY_MIN, "kone.concurrency_min", INT, 1, 65535, NULL, "4", W, 0,
    "Adaptive concurrency (per building and for the worker, at most kone.concurrency_max): the "
    "lowest "
    "number of KONE requests outstanding that 5xx, 429 and timeouts can drive the limit down to. "
    "Each answer raises the limit by one; jobs above it wait in the worker "
    "(docs/kone-client.md).")
KD_KEY(KONE_CONCURRENCY_DECREASE_PCT, "kone.concurrency_decrease_pct", INT, 1, 100, NULL, "90", W,
       0,
       "Adaptive concurrency: each 5xx, 429 or timeout multiplies the limit by this share (%); 100 "
       "keeps it at its maximum, kone.concurrency_max or worker.inflight when smaller (adaptive "
       "concurrency off).")
KD_KEY(
    KONE_CONCURRENCY_BUILDING_MAX, "kone.concurrency_building_max", INT, 0, 65535, NULL, "0", W, 0,
    "Adaptive concurrency: the highest limit of one building (0: kone.concurrency_max), so at most "
    "this many of its requests are out unanswered; when its site link goes down, at most this "
    "many of its calls are stuck (they end unknown: docs/failure-handling.md).")
KD_KEY(KONE_STALL_PROBE_MS, "kone.stall_probe_ms", MS, 0, 3600000, NULL, "1000", W, 0,
       "A building whose requests are out while none of them made progress (a call result, an "
       "answer) for this long is pinged; a ping failed with KONE's link-down error 1005 opens its "
       "circuit at once, and its stuck calls give up (0: only the breaker window decides; "
       "docs/failure-handling.md).")
KD_KEY(KONE_RATE_SLOWDOWN_SHARE, "kone.rate_slowdown_share", INT, 0, 100, NULL, "50", W, 0,
       "A building's request rate is halved when 429s make up this share (%) or more of its last "
       "answers (at least 32 of the last 64, within 30 s); 0: at every 429. Fewer 429s only lower "
       "the adaptive concurrency limit.")
KD_KEY(KONE_RATE_PER_S, "kone.rate_per_s", INT, 0, 1000000, NULL, "0", W, 0,
       "Rate limit per building, requests per second (0: none); 429s (kone.rate_slowdown_share) "
       "lower a building's rate for a while either way.")
KD_KEY(KONE_RATE_BURST, "kone.rate_burst", INT, 0, 1000000, NULL, "0", W, 0,
       "Requests a building may get at once under its rate limit (0: one second's worth).")
/* producer */
KD_KEY(PRODUCER_CONFIRM_TIMEOUT_MS, "producer.confirm_timeout_ms", MS, 1, 3600000, NULL, "10000", P,
       0, "How long to wait for the broker's publisher confirm.")
/* kone-events */
KD_KEY(EVENTS_TOPIC, "events.topic", STR, 0, 0, NULL, "kone.call.results", E, 0,
       "Topic to read (results, events or metrics).")
KD_KEY(EVENTS_GROUP, "events.group", STR, 0, 0, NULL, "", E, 0,
       "Consumer group (empty: a fresh one, reading without committing).")
KD_KEY(EVENTS_FROM_BEGINNING, "events.from_beginning", BOOL, 0, 0, NULL, "true", E, 0,
       "Start from the earliest offset.")
KD_KEY(EVENTS_MAX, "events.max", INT, 0, INT64_MAX, NULL, "0", E, 0,
       "Stop after this many events (0: no limit).")
KD_KEY(EVENTS_IDLE_EXIT_MS, "events.idle_exit_ms", MS, 0, INT64_MAX / 1000, NULL, "0", E, 0,
       "Exit after this long without a new event (0: run until interrupted).")
/* kone-sim */
KD_KEY(SIM_LISTEN, "sim.listen", STR, 0, 0, NULL, "127.0.0.1", S, 0, "Address kone-sim listens on.")
KD_KEY(SIM_PORT, "sim.port", INT, 1, 65535, NULL, "8443", S, 0, "HTTPS/WSS port of kone-sim.")
KD_KEY(SIM_CERT, "sim.cert", STR, 0, 0, NULL, "", S, 0, "PEM certificate of kone-sim (required).")
KD_KEY(SIM_KEY, "sim.key", STR, 0, 0, NULL, "", S, 0, "PEM private key of kone-sim (required).")
KD_KEY(SIM_BUILDINGS, "sim.buildings", STR, 0, 0, NULL, "sim/buildings.json", S, 0,
       "Buildings file (topology, actions, lifts).")
KD_KEY(SIM_CLIENTS, "sim.clients", STR, 0, 0, NULL, "sim/clients.json", S, 0,
       "Client credentials and their scopes.")
KD_KEY(SIM_SPEED, "sim.speed", DOUBLE, 0.01, 1000, NULL, "1", S, 0,
       "Clock speed-up of the lift model (10 = ten times faster than real time).")
KD_KEY(SIM_TOKEN_TTL_S, "sim.token_ttl_s", S, 1, 86400 * 30, NULL, "3600", S, 0,
       "Lifetime of the tokens kone-sim issues.")
KD_KEY(SIM_IDLE_TIMEOUT_S, "sim.idle_timeout_s", S, 0, 86400, NULL, "60", S, 0,
       "Close a WebSocket after this many idle seconds, as KONE does.")
KD_KEY(
    SIM_MAX_TOKEN_BUILDINGS, "sim.max_token_buildings", INT, 0, 100000, NULL, "0", S, 0,
    "A token request whose scopes name more buildings than this is refused 400 invalid_scope, as "
    "KONE caps the buildings of one token (0: no cap).")
KD_KEY(
    SIM_SNAPSHOT, "sim.snapshot", BOOL, 0, 0, NULL, "false", S, 0,
    "Send a new site-monitoring subscriber the current call states and lift status at once. KONE "
    "documents no such snapshot, so it is off: on only to compare with the simulator's older, "
    "kinder behaviour.")
KD_KEY(SIM_MAX_CONN_S, "sim.max_conn_s", S, 0, 86400 * 7, NULL, "7200", S, 0,
       "Close every WebSocket after this many seconds, as KONE does.")
KD_KEY(SIM_FAULTS, "sim.faults", STR, 0, 0, NULL, "", S, 0,
       "Fault injection spec applied at start: the JSON that POST /sim/faults takes "
       "(docs/kone-sim.md).")
KD_KEY(SIM_CONTROL_TOKEN, "sim.control_token", STR, 0, 0, NULL, "", S, 1,
       "Bearer token the /sim/ control endpoint requires (secret; also KD_SIM_CONTROL_TOKEN_FILE; "
       "empty: no check).")
KD_KEY(SIM_TOKEN_LOG, "sim.token_log", STR, 0, 0, NULL, "", S, 0,
       "Test only: append every issued access token to this file (empty: off); lets a test search "
       "logs for leaked tokens.")

/** @endcond */
