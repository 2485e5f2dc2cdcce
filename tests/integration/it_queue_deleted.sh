#!/usr/bin/env bash
# it_queue_deleted: the work queue deleted under a running worker (by hand, or by a policy).
# RabbitMQ cancels the worker's consumer (kd_amqp announces consumer_cancel_notify at login);
# the worker logs why, reconnects at once, declares the queue again, consumes it, and executes
# the jobs published after. Before the capability was announced, the worker waited for
# deliveries from the deleted queue forever.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

consumers() { rabbitmqctl -q list_queues name consumers 2>/dev/null | awk -v q="$KD_AMQP_QUEUE" '$1 == q { print $2 }'; }

it_start_worker w1
for _ in $(seq 150); do
    [ "$(consumers)" = 1 ] && break
    sleep 0.2
done
[ "$(consumers)" = 1 ] || it_fail "the worker does not consume $KD_AMQP_QUEUE"
rabbitmqctl -q delete_queue "$KD_AMQP_QUEUE" >/dev/null
for _ in $(seq 150); do
    grep -q 'the broker cancelled the consumer' "$IT_DIR/w1.log" && [ "$(consumers)" = 1 ] && break
    sleep 0.2
done
grep -q "the broker cancelled the consumer of queue '$KD_AMQP_QUEUE'" "$IT_DIR/w1.log" ||
    it_fail "the worker did not notice its queue was deleted"
[ "$(consumers)" = 1 ] || it_fail "the worker did not declare and consume $KD_AMQP_QUEUE again"
it_log "consumer cancelled, queue declared and consumed again"

jobs_good 2 >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "kone-producer: $(tail -n 3 "$IT_DIR/producer.log")"
it_wait_results 2 60
it_expect good-1 '.outcome=="succeeded"'
it_expect good-2 '.outcome=="succeeded"'
it_stop_worker w1
it_log "PASS"
