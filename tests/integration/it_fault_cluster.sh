#!/usr/bin/env bash
# it_fault_cluster: a worker fails over when the RabbitMQ node it is connected to stops.
# scripts/cluster-up starts three nodes on loopback (kd-c1..3, AMQP 5681-5683); the test's
# quorum queue gets a member on each. 1,200 jobs are published to kd-c3; w1 knows the nodes
# as 5681,5682,5683 and w2 as 5682,5683,5681 (amqp.host, a comma-separated list), so they
# start on kd-c1 and kd-c2. Once 200 results are in, the node w1 is connected to is stopped
# (rabbitmqctl stop: the whole Erlang VM). The queue keeps its majority (2 of 3).
# Proves: w1 reconnects to another node by itself and goes on taking jobs; every confirmed job
# has exactly one final outcome; duplicates (w1's jobs in flight at the stop; the queue leader
# may move too) at most 2 x the in-flight limit, reported; the queue ends empty.
# The cluster is stopped at the end (scripts/cluster-down), pass or fail.
source "$(dirname "$0")/lib.sh"

help=$("$KD_BIN_DIR/kone-worker" --help 2>&1 || true)
grep -A1 -e '--amqp-host ' <<<"$help" | grep -q -i -E 'comma|list' ||
    it_pending "kone-worker cannot be given several RabbitMQ nodes yet (amqp.host as a comma-separated host[:port] list, shared/src/amqp.c)"

N=${IT_FAULT_JOBS:-1200}
INFLIGHT=16
it_at_exit '"$KD_SRC_DIR/scripts/cluster-down" >>"$IT_DIR/cluster.log" 2>&1'
t0=$SECONDS
"$KD_SRC_DIR/scripts/cluster-up" >"$IT_DIR/cluster.log" 2>&1 || it_fail "scripts/cluster-up failed: $(tail -n 5 "$IT_DIR/cluster.log")"
it_log "cluster up in $((SECONDS - t0))s"
# shellcheck disable=SC1091 # written by scripts/cluster-up at run time: not there to follow
source "$KD_STATE_DIR/cluster/env"
# The three-node cluster of scripts/cluster-up listens on plain AMQP: this test is about
# failing over between nodes, which is the same code with or without TLS (amqp.c tries each
# node of amqp.host in turn), and the stack's own RabbitMQ proves the TLS path. So here, and
# only here, amqp.tls is off (the worker logs its INSECURE warning).
export KD_AMQP_TLS=false
cctl() { "$KD_CLUSTER_DIR/bin/rabbitmqctl" "$@"; }

# the port of the cluster node a worker is connected to (empty when none)
node_port_of() {
    ss -tnpH state established 2>/dev/null | grep "pid=$(it_worker_pid "$1")," |
        awk '{print $4}' | sed 's/.*://' | grep -x -E '568[1-3]' | head -n1 || true
}

it_start_sim --sim-faults='{"latency_ms":50,"jitter_ms":50}'
it_jobs_good "$N" >"$IT_DIR/jobs.jsonl"
KD_AMQP_PORT=5683 it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
members=$(cctl -n kd-c3@localhost -q list_queues name type members 2>/dev/null | awk -v q="$KD_AMQP_QUEUE" '$1 == q')
it_log "queue: $members"
grep -q quorum <<<"$members" && [ "$(grep -o 'kd-c[1-3]@localhost' <<<"$members" | sort -u | wc -l)" -eq 3 ] ||
    it_fail "the queue is not a quorum queue with a member on each node: $members"

it_follow_results
it_fault_worker w1 KD_AMQP_HOST=127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683
it_fault_worker w2 KD_AMQP_HOST=127.0.0.1:5682,127.0.0.1:5683,127.0.0.1:5681
it_wait_followed 200 300
before=$(node_port_of w1)
[ -n "$before" ] || it_fail "w1 is connected to no cluster node"
victim=$((before - 5680))
it_log "stopping kd-c$victim@localhost (port $before), the node w1 is connected to"
cctl -n "kd-c$victim@localhost" stop >"$IT_DIR/node-stop.log" 2>&1 || it_fail "rabbitmqctl stop failed: $(tail -n 3 "$IT_DIR/node-stop.log")"
it_fault_ended # the node stays down: the clock starts at its loss (failover included)
survivor=$((victim % 3 + 1))
after=""
for _ in $(seq 150); do
    after=$(node_port_of w1)
    [ -n "$after" ] && [ "$after" != "$before" ] && break
    sleep 0.2
done
[ -n "$after" ] && [ "$after" != "$before" ] || it_fail "w1 did not reconnect to another node within 30 s"
it_log "w1 failed over from port $before to $after"

# the queue lives on the cluster, not on the dev stack's broker: ask a surviving node
IT_RABBITMQCTL=("$KD_CLUSTER_DIR/bin/rabbitmqctl" -n "kd-c$survivor@localhost")
it_recovery "$N" 600
it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled $((2 * INFLIGHT)) --mgmt-url "http://127.0.0.1:$((15680 + survivor))"
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] || it_fail "not every job succeeded: $(jq -c .final_outcomes "$s")"
jq -e '.workers.w1 > 0 and .workers.w2 > 0' "$s" >/dev/null || it_fail "both workers should have taken jobs: $(jq -c .workers "$s")"
grep -q 'RabbitMQ connection lost\|RabbitMQ unavailable' "$IT_DIR/w1.log" || it_fail "w1 did not notice its node stopping"
it_log "$(jq -r '"\(.redelivered) jobs redelivered, \(.duplicate_count) with two results (limit '$((2 * INFLIGHT))')"' "$s")"
it_stop_worker w1
it_stop_worker w2
left=$(cctl -n "kd-c$survivor@localhost" -q list_queues name messages 2>/dev/null | awk -v q="$KD_AMQP_QUEUE" '$1 == q {print $2}')
[ "${left:-x}" = 0 ] || it_fail "the queue holds ${left:-an unknown number of} messages at the end"
it_stop_sim
it_log "PASS in $((SECONDS - t0))s"
