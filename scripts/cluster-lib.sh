# shellcheck shell=bash disable=SC2034 # its variables are read by the scripts that source it
# scripts/cluster-lib.sh: what cluster-up, cluster-down and the cluster test share about the
# three-node RabbitMQ test cluster (kd-c1..3@localhost). Sourced after scripts/lib.sh, never run.
#
# Node I (1..3) listens on AMQP 5680+I, management 15680+I, Erlang distribution 25680+I, and
# keeps everything in $KD_CLUSTER_DIR/cI, its HOME. The nodes share one Erlang cookie (copies
# of $KD_CLUSTER_DIR/.erlang.cookie in each HOME), which is not the dev node's. HOME is also
# how a node's VM is told from the others: its command line says `-home $KD_CLUSTER_DIR/cI`.

KD_CLUSTER_DIR=$KD_STATE_DIR/cluster
KD_CLUSTER_AMQP_BASE=5680
KD_CLUSTER_MGMT_BASE=15680
KD_CLUSTER_DIST_BASE=25680

kd_cluster_node() { printf 'kd-c%s@localhost\n' "$1"; }

# kd_cluster_mark I: in node I's Erlang VM command line, and in no other process's.
kd_cluster_mark() { printf -- '-home %s \n' "$KD_CLUSTER_DIR/c$1"; }

# kd_cluster_env I: the environment of node I and of a CLI talking to it.
kd_cluster_env() {
    local d=$KD_CLUSTER_DIR/c$1
    export HOME=$d
    export RABBITMQ_NODENAME=kd-c$1@localhost
    export RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf
    export RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config
    export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$d/mnesia
    export RABBITMQ_LOG_BASE=$d/log
    export RABBITMQ_PID_FILE=$KD_CLUSTER_DIR/pids/c$1-beam.pid
    export RABBITMQ_DIST_PORT=$((KD_CLUSTER_DIST_BASE + $1))
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=$LOOPBACK
    export ERL_CRASH_DUMP=$d/log/erl_crash.dump
}

# kd_cluster_ctl I ARGS...: rabbitmqctl against node I.
kd_cluster_ctl() (
    i=$1
    shift
    kd_cluster_env "$i"
    exec "$RABBIT_BIN/rabbitmqctl" -n "$(kd_cluster_node "$i")" "$@"
)

# kd_cluster_beam_running I: node I's Erlang VM runs.
kd_cluster_beam_running() { KD_PID_DIR=$KD_CLUSTER_DIR/pids kd_running "c$1-beam" "$(kd_cluster_mark "$1")"; }

# kd_cluster_node_up I: node I's VM runs and its AMQP listener accepts connections.
kd_cluster_node_up() { kd_cluster_beam_running "$1" && kd_port_open $((KD_CLUSTER_AMQP_BASE + $1)); }

# kd_cluster_ready: kd-c1 sees all three nodes running and every AMQP port answers.
kd_cluster_ready() {
    local s i
    for i in 1 2 3; do kd_cluster_node_up "$i" || return 1; done
    s=$(kd_cluster_ctl 1 cluster_status --formatter json 2>/dev/null) || return 1
    jq -e '(.running_nodes | length) == 3' <<<"$s" >/dev/null
}

# kd_cluster_lock: one cluster-up or cluster-down at a time (fd 8, closed by kd_spawn).
kd_cluster_lock() {
    exec 8>"${TMPDIR:-/tmp}/kone-dispatch-cluster.lock"
    if ! flock -n 8; then
        kd_say "waiting for another cluster-up/cluster-down to finish"
        flock -w 600 8 || kd_die "another cluster-up/cluster-down held the lock for 10 minutes"
    fi
}
