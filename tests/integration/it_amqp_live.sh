#!/usr/bin/env bash
# it_amqp_live: the broker half of the AMQP unit tests (test_amqp, test_amqp_retry,
# test_producer), which run only with KD_TEST_AMQP=1 and a RabbitMQ to talk to: the library's
# confirmed publish, returns, reconnects, queue arguments and delivery limits, and the
# blocking producer API of docs/producer.md with its example program, against the stack's
# real RabbitMQ over TLS. ctest's unit label runs the same programs without a broker, where
# these cases skip.
source "$(dirname "$0")/lib.sh"

for t in test_amqp test_amqp_retry test_producer; do
    [ -x "$KD_BIN_DIR/$t" ] || it_fail "$KD_BIN_DIR/$t is not built"
    rc=0
    # the programs name their own queues (kd.test.*), and their pure cases expect the defaults
    env -u KD_AMQP_EXCHANGE -u KD_AMQP_QUEUE -u KD_AMQP_ROUTING_KEY KD_TEST_AMQP=1 \
        timeout 300 "$KD_BIN_DIR/$t" >"$IT_DIR/$t.out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || it_fail "$t: exit $rc: $(grep -E 'FAILED|ERROR|Failure' "$IT_DIR/$t.out" | head -n 5)"
    # every case ran against the broker: none skipped for want of KD_TEST_AMQP
    ! grep -q '\[  SKIPPED \]' "$IT_DIR/$t.out" || it_fail "$t skipped cases: $(grep SKIPPED "$IT_DIR/$t.out")"
    it_log "$t: $(grep -c '^\[       OK \]' "$IT_DIR/$t.out") cases passed"
done
it_log "ok"
