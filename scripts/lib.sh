# shellcheck shell=bash
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
AMQP_PORT=$((5672 + KD_PORT_OFFSET))
RABBIT_MGMT_PORT=$((15672 + KD_PORT_OFFSET))
RABBIT_PROM_PORT=$((15692 + KD_PORT_OFFSET))
RABBIT_DIST_PORT=$((25672 + KD_PORT_OFFSET))
if ((KD_PORT_OFFSET)); then RABBIT_NODE=kd-rabbit-$KD_PORT_OFFSET@localhost; else RABBIT_NODE=kd-rabbit@localhost; fi
RABBIT_BEAM_MARK="-home $KD_STATE_DIR/rabbitmq"  # in the Erlang VM's command line: our node
RABBIT_BIN=/usr/lib/rabbitmq/bin  # the real scripts; /usr/sbin ones re-run themselves as user rabbitmq
KAFKA_PORT=$((9092 + KD_PORT_OFFSET))
KAFKA_CONTROLLER_PORT=$((9093 + KD_PORT_OFFSET))
KAFKA_TOPICS=(kone.call.results kone.call.events kone.worker.metrics)
KAFKA_TOPIC_PARTITIONS=6
SIM_PORT=$((8443 + KD_PORT_OFFSET))

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
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
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
        cd "$KD_STATE_DIR"
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
