# shellcheck shell=bash disable=SC2034 # its variables are read by the scripts that source it
# scripts/lib.sh: what bootstrap, dev-up, dev-down and test share. Sourced, never run.
#
# It fixes where things live (the checkout, the state folder .dev, the download cache), the
# loopback ports of the dev stack, and a few small helpers: messages, waiting with a deadline,
# and pid files. A pid file is only trusted when the live process behind it still has the
# expected command line, so a stale file left by a crash can never make dev-down signal some
# unrelated process that happens to have been given the same pid.

# --- Where things live ------------------------------------------------------------------------
KD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KD_STATE_DIR=${KD_STATE_DIR:-$KD_ROOT/.dev}
[[ $KD_STATE_DIR == /* ]] || KD_STATE_DIR=$PWD/$KD_STATE_DIR  # daemons run from another cwd
KD_CACHE_DIR=${KD_CACHE_DIR:-$HOME/.cache/kone-dispatch}
[[ $KD_CACHE_DIR == /* ]] || KD_CACHE_DIR=$PWD/$KD_CACHE_DIR
KD_LOG_DIR=$KD_STATE_DIR/logs
KD_PID_DIR=$KD_STATE_DIR/pids
KD_TLS_DIR=$KD_STATE_DIR/tls

# The Kafka version has one source of truth: the pom that bootstrap hands to Maven.
KD_KAFKA_POM=$KD_ROOT/scripts/kafka/pom.xml
KD_KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KD_KAFKA_POM" | head -n1)
KD_KAFKA_HOME=$KD_CACHE_DIR/kafka-$KD_KAFKA_VERSION
KD_KAFKA_LIB=$KD_KAFKA_HOME/lib
KD_JAVA_HOME=${KD_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
KD_JAVA=$KD_JAVA_HOME/bin/java

# --- The stack: loopback only, fixed ports (the programs' defaults in shared/src/config.c) ---
# KD_PORT_OFFSET (default 0) shifts every port and renames the RabbitMQ node, so a second
# stack (another KD_STATE_DIR) can run beside the first on one machine: parallel work on one
# box, never CI. Everything downstream reads the ports from $KD_STATE_DIR/env.
KD_PORT_OFFSET=${KD_PORT_OFFSET:-0}
[[ $KD_PORT_OFFSET =~ ^[0-9]+$ ]] || { echo "KD_PORT_OFFSET must be a number" >&2; exit 2; }
LOOPBACK=127.0.0.1
AMQP_PORT=$((5671 + KD_PORT_OFFSET)) # AMQPS (TLS): the stack has no plain AMQP listener
RABBIT_MGMT_PORT=$((15672 + KD_PORT_OFFSET))
RABBIT_PROM_PORT=$((15692 + KD_PORT_OFFSET))
RABBIT_DIST_PORT=$((25672 + KD_PORT_OFFSET))
if ((KD_PORT_OFFSET)); then RABBIT_NODE=kd-rabbit-$KD_PORT_OFFSET@localhost; else RABBIT_NODE=kd-rabbit@localhost; fi
RABBIT_BEAM_MARK="-home $KD_STATE_DIR/rabbitmq"  # in the Erlang VM's command line: our node
RABBIT_BIN=/usr/lib/rabbitmq/bin  # the real scripts; /usr/sbin ones re-run themselves as user rabbitmq
KAFKA_PORT=$((9092 + KD_PORT_OFFSET))
KAFKA_CONTROLLER_PORT=$((9093 + KD_PORT_OFFSET))
# Kafka's client listeners: SSL with a client certificate (mutual TLS), and SASL_SSL with
# SCRAM-SHA-512 (user kd, password in secrets/kafka-password). KAFKA_PORT stays PLAINTEXT on
# loopback for the broker's own replication and for dev-up's admin tools (topics, users).
KAFKA_SSL_PORT=$((9094 + KD_PORT_OFFSET))
KAFKA_SASL_PORT=$((9095 + KD_PORT_OFFSET))
KAFKA_SASL_USER=kd
KAFKA_TOPICS=(kone.call.results kone.call.events kone.worker.metrics)
KAFKA_TOPIC_PARTITIONS=6
SIM_PORT=$((8443 + KD_PORT_OFFSET))
# PostgreSQL, the worker's call ledger: Debian's server, run from the state folder (see the
# PostgreSQL section below). Role kd owns database kone_dispatch; its URL is a secret file.
KD_PG_BIN=${KD_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=$((5432 + KD_PORT_OFFSET))
PG_DIR=$KD_STATE_DIR/postgres  # postgresql.conf, pg_hba.conf, tls/ (root's, read by the server)
PG_DATA=$PG_DIR/data           # the cluster (owned by the server's OS user)
PG_MARK="-D $PG_DATA "         # in the postmaster's command line: our cluster
PG_ROLE=kd
PG_DB=kone_dispatch
KD_SECRETS_DIR=$KD_STATE_DIR/secrets  # mode 700: ledger-password, ledger-url
PG_URL_FILE=$KD_SECRETS_DIR/ledger-url
PG_PASSWORD_FILE=$KD_SECRETS_DIR/ledger-password
KAFKA_PASSWORD_FILE=$KD_SECRETS_DIR/kafka-password # SCRAM password of user kd
KCAT_CONF_FILE=$KD_SECRETS_DIR/kcat.conf           # kcat's settings for the SASL_SSL listener
# The server's Unix socket (superuser access, peer authentication) lives in the state folder,
# unless that path is too long for a socket address (108 bytes on Linux).
PG_SOCKET_DIR=$PG_DIR/run
((${#PG_SOCKET_DIR} + 18 < 108)) || PG_SOCKET_DIR=/tmp/kd-pg-$PG_PORT

# --- Messages ---------------------------------------------------------------------------------
KD_PROG=${KD_PROG:-$(basename "$0")}
kd_say() { printf '%s: %s\n' "$KD_PROG" "$*"; }
kd_warn() { printf '%s: %s\n' "$KD_PROG" "$*" >&2; }
kd_die() {
    kd_warn "error: $*"
    exit 1
}

# kd_tail FILE: the end of a log, indented, for error messages.
kd_tail() {
    [[ -f $1 ]] || return 0
    printf '  --- last lines of %s ---\n' "$1" >&2
    tail -n "${2:-25}" "$1" | sed 's/^/  | /' >&2
}

# --- Processes --------------------------------------------------------------------------------
kd_pidfile() { printf '%s/%s.pid\n' "$KD_PID_DIR" "$1"; }

# kd_pid NAME: prints the pid recorded for NAME (may be stale).
kd_pid() {
    local f
    f=$(kd_pidfile "$1")
    [[ -s $f ]] && head -n1 "$f"
}

# kd_running NAME PATTERN: true when NAME's pid file names a live (non-zombie) process whose
# command line contains PATTERN.
kd_running() {
    local pid
    pid=$(kd_pid "$1") || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    # stderr first: the process may end between the test above and the read (a race, no error)
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# kd_alive NAME: the recorded process exists and is no zombie. Unlike kd_running it does not
# look at the command line, which is not final for a moment after kd_spawn (before the exec).
kd_alive() {
    local pid
    pid=$(kd_pid "$1") || return 1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    [[ $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]
}

# kd_lock: one dev-up or dev-down at a time on this machine (the ports are the machine's, so
# the lock is too): two ctest runs starting the stack at once would otherwise race. Held on
# fd 9 until the script exits; kd_spawn closes it so the daemons do not inherit the lock.
kd_lock() {
    exec 9>"${TMPDIR:-/tmp}/kone-dispatch-dev-stack.lock"
    if ! flock -n 9; then
        kd_say "waiting for another dev-up/dev-down to finish"
        flock -w 600 9 || kd_die "another dev-up/dev-down held the lock for 10 minutes"
    fi
}

# kd_spawn NAME LOG CMD...: starts CMD in the background in its own session, from the state
# folder, with stdin from /dev/null, both outputs appended to LOG and no other inherited file
# descriptor, and records its pid. A daemon that keeps its launcher's pipe open (ctest's, CI's,
# a `| tee`) keeps that launcher waiting for end-of-file until the daemon exits; one that keeps
# fd 9 would hold kd_lock forever.
kd_spawn() {
    local name=$1 log=$2
    shift 2
    mkdir -p "$KD_PID_DIR" "$(dirname "$log")"
    (
        cd "$KD_STATE_DIR" || exit 1
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        exec setsid "$@" </dev/null >>"$log" 2>&1
    ) &
    echo $! >"$(kd_pidfile "$name")"
}

# kd_stop NAME PATTERN SECONDS: SIGTERM, up to SECONDS for a clean exit, then SIGKILL.
kd_stop() {
    local name=$1 pattern=$2 secs=$3 pid deadline
    if ! kd_running "$name" "$pattern"; then
        rm -f "$(kd_pidfile "$name")"
        return 0
    fi
    pid=$(kd_pid "$name")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + secs))
    while kd_running "$name" "$pattern" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kd_running "$name" "$pattern"; then
        kd_warn "$name (pid $pid) did not stop within ${secs}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(kd_pidfile "$name")"
}

# kd_wait SECONDS WHAT NAME CMD...: runs CMD every half second until it succeeds. Fails after
# SECONDS, or at once when the process recorded as NAME has exited (NAME "-": no process).
kd_wait() {
    local secs=$1 what=$2 name=$3 deadline
    shift 3
    deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ $name != - ]] && ! kd_alive "$name"; then
            kd_warn "$what: the process exited while starting"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            kd_warn "$what: not ready after ${secs}s"
            return 1
        fi
        sleep 0.5
    done
}

# kd_port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
kd_port_open() { (exec 3<>"/dev/tcp/$LOOPBACK/$1") 2>/dev/null; }

# kd_port_owner PORT: who listens there, for error messages.
kd_port_owner() { ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/.*users:((//; s/))$//' | head -n1; }

# --- The tools of the stack -------------------------------------------------------------------
# RabbitMQ's environment: every file of our node lives in the state folder, and HOME there
# gives the node and its CLI their own Erlang cookie, whoever else runs RabbitMQ on the machine.
kd_rabbit_env() {
    export HOME=$KD_STATE_DIR/rabbitmq
    export RABBITMQ_NODENAME=$RABBIT_NODE
    export RABBITMQ_CONF_ENV_FILE=$KD_STATE_DIR/rabbitmq/rabbitmq-env.conf
    export RABBITMQ_CONFIG_FILE=$KD_STATE_DIR/rabbitmq/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$KD_STATE_DIR/rabbitmq/advanced.config
    export RABBITMQ_ENABLED_PLUGINS_FILE=$KD_STATE_DIR/rabbitmq/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$KD_STATE_DIR/rabbitmq/mnesia
    export RABBITMQ_LOG_BASE=$KD_LOG_DIR/rabbitmq
    export RABBITMQ_PID_FILE=$KD_PID_DIR/rabbitmq-beam.pid
    export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=$LOOPBACK
    export ERL_CRASH_DUMP=$KD_LOG_DIR/rabbitmq/erl_crash.dump
}

# kd_rabbitmqctl ARGS...: rabbitmqctl against our node.
kd_rabbitmqctl() (
    kd_rabbit_env
    exec "$RABBIT_BIN/rabbitmqctl" -n "$RABBIT_NODE" "$@"
)

# kd_kafka_tool CLASS ARGS...: one of Kafka's command line tools, tuned for a short-lived JVM.
kd_kafka_tool() {
    local cls=$1
    shift
    "$KD_JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KD_ROOT/scripts/kafka/tools-log4j.properties" \
        -cp "$KD_KAFKA_LIB/*" "$cls" "$@"
}

# --- PostgreSQL (the call ledger) -------------------------------------------------------------
# dev-up creates the cluster (initdb), its config, certificate and role; these helpers run it.
# PostgreSQL refuses to run as root: when the scripts run as root, the server and every tool
# that touches the data folder run as the OS user `postgres` (which owns $PG_DATA). The
# postmaster runs in the foreground under kd_spawn, like the brokers, so its pid file and its
# log ($KD_LOG_DIR/postgres/postgres.log) are where everything else's are. Fault tests stop and
# start the server alone with kd_pg_stop / kd_pg_start (or `kd-pg stop|start` in .dev/bin).

# kd_pg_user: the OS user the server runs as.
kd_pg_user() { if ((EUID == 0)); then echo postgres; else id -un; fi; }

# kd_pg_as CMD...: CMD as the server's OS user (exec'd in place: no extra process).
kd_pg_as() {
    if ((EUID == 0)); then
        HOME=$PG_SOCKET_DIR setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

# kd_pg_running: our postmaster is alive. Adopts a postmaster that lost its pid file (e.g. one
# started by pg_ctl by hand) through the cluster's own postmaster.pid.
kd_pg_running() {
    kd_running postgres "$PG_MARK" && return 0
    local pid
    pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PG_MARK" || return 1
    mkdir -p "$KD_PID_DIR" && echo "$pid" >"$(kd_pidfile postgres)"
}

# kd_pg_ready: the server accepts connections on its TCP port. pg_isready asks as the ledger's
# role: the server leaves a client that hangs up at the password request out of its log,
# while any other name would log a "no pg_hba.conf entry" error on every poll.
kd_pg_ready() {
    kd_pg_running && "$KD_PG_BIN/pg_isready" -q -h "$LOOPBACK" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" -t 2
}

# kd_pg_wait_gone: waits (up to 10 s) for the postmaster named in postmaster.pid to disappear.
# One killed hard stays a zombie until it is reaped, and PostgreSQL takes any live pid in that
# file for a running server and refuses to start.
kd_pg_wait_gone() {
    local pid deadline=$((SECONDS + 10))
    pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do
        # A live process that is not our postmaster (its pid reused) is not waited for.
        if [[ $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) != Z ]] &&
            ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PG_MARK"; then
            return 0
        fi
        sleep 0.1
    done
}

# kd_pg_spawn: starts the postmaster in the background (the cluster and config must exist).
kd_pg_spawn() {
    local as=()
    mkdir -p "$KD_LOG_DIR/postgres" "$PG_SOCKET_DIR"
    # The socket folder belongs to the server's user, as /run/postgresql does on Debian.
    if ((EUID == 0)); then
        chown postgres:postgres "$PG_SOCKET_DIR"
        as=(env HOME="$PG_SOCKET_DIR" setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    chmod 700 "$PG_SOCKET_DIR"
    kd_pg_wait_gone
    kd_spawn postgres "$KD_LOG_DIR/postgres/postgres.log" "${as[@]}" \
        "$KD_PG_BIN/postgres" -D "$PG_DATA" -c "config_file=$PG_DIR/postgresql.conf"
}

# kd_pg_wait [SECONDS]: until the server accepts connections; fails when it exits first.
kd_pg_wait() {
    if ! kd_wait "${1:-60}" "PostgreSQL" postgres kd_pg_ready; then
        kd_tail "$KD_LOG_DIR/postgres/postgres.log"
        return 1
    fi
}

# kd_pg_start: starts the stack's PostgreSQL when it is not running and waits until it accepts
# connections. For fault tests; dev-up does this and more (cluster, config, role).
kd_pg_start() {
    kd_pg_running && { kd_pg_wait 60; return; }
    [[ -s $PG_DATA/PG_VERSION && -s $PG_DIR/postgresql.conf ]] ||
        { kd_warn "PostgreSQL: no cluster in $PG_DATA; run scripts/dev-up"; return 1; }
    if kd_port_open "$PG_PORT"; then
        kd_warn "PostgreSQL: port $PG_PORT is taken by $(kd_port_owner "$PG_PORT" || echo 'an unknown process')"
        return 1
    fi
    kd_pg_spawn
    kd_pg_wait 60
}

# kd_pg_stop [MODE] [SECONDS]: pg_ctl stop -m MODE (fast: roll back open transactions, close
# connections, checkpoint; immediate: no checkpoint, like a crash, recovered at the next start;
# smart: wait for clients to leave). Escalates to SIGQUIT, then SIGKILL, after SECONDS (60).
kd_pg_stop() {
    local mode=${1:-fast} secs=${2:-60} pid deadline
    case $mode in
    fast | immediate | smart) ;;
    *)
        kd_warn "PostgreSQL: unknown stop mode '$mode' (fast, immediate or smart)"
        return 2
        ;;
    esac
    if ! kd_pg_running; then
        rm -f "$(kd_pidfile postgres)"
        return 0
    fi
    pid=$(kd_pid postgres)
    if ! kd_pg_as "$KD_PG_BIN/pg_ctl" stop -D "$PG_DATA" -m "$mode" -w -t "$secs" >/dev/null 2>&1 &&
        kd_pg_running; then
        kd_warn "PostgreSQL (pid $pid) did not stop within ${secs}s; sending SIGQUIT"
        kill -QUIT "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while kd_alive postgres && ((SECONDS < deadline)); do sleep 0.2; done
        if kd_alive postgres; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    # pg_ctl returns once postmaster.pid is gone; the process may linger a moment longer.
    deadline=$((SECONDS + 5))
    while kd_alive postgres && ((SECONDS < deadline)); do sleep 0.1; done
    rm -f "$(kd_pidfile postgres)"
}

# kd_pg_psql [PSQL ARGS...]: psql as the cluster's superuser over the Unix socket (peer
# authentication), database postgres unless ARGS name another (-d).
kd_pg_psql() {
    kd_pg_as "$KD_PG_BIN/psql" -X -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U "$(kd_pg_user)" -d postgres "$@"
}

# kd_pg_cli COMMAND: what .dev/bin/kd-pg runs (see docs/dev-stack.md).
kd_pg_cli() {
    local cmd=${1:-status}
    (($#)) && shift
    case $cmd in
    start) kd_pg_start ;;
    stop) kd_pg_stop "$@" ;;
    restart) kd_pg_stop "$@" && kd_pg_start ;;
    status)
        if kd_pg_ready; then
            echo "PostgreSQL: running (pid $(kd_pid postgres)) on $LOOPBACK:$PG_PORT, data $PG_DATA"
        elif kd_pg_running; then
            echo "PostgreSQL: starting or not answering (pid $(kd_pid postgres)) on $LOOPBACK:$PG_PORT"
            return 1
        else
            echo "PostgreSQL: stopped ($LOOPBACK:$PG_PORT, data $PG_DATA)"
            return 3
        fi
        ;;
    psql) kd_pg_psql "$@" ;;
    url) cat "$PG_URL_FILE" ;;
    *)
        echo "usage: kd-pg start | stop [fast|immediate|smart] | restart [MODE] | status | psql [ARGS] | url" >&2
        return 2
        ;;
    esac
}
