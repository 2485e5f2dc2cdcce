#!/usr/bin/env bash
# it_foreign_client: the job format is language-neutral. A job encoded by Python's msgpack
# (a different encoder, with its own integer widths and bin/str choices) and published by
# Debian's amqp-tools (a different AMQP client) is executed like any other.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

it_start_worker w1
# the worker declares the topology; wait for its queue to exist
for _ in $(seq 100); do
    rabbitmqctl -q list_queues name 2>/dev/null | grep -qx "$KD_AMQP_QUEUE" && break
    sleep 0.2
done
job=$(jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-py"')
python3 - "$job" >"$IT_DIR/body.bin" <<'PY'
import json, sys, msgpack
job = json.loads(sys.argv[1])
# different widths on purpose: created_at as uint64, area as a plain int, strings as str
sys.stdout.buffer.write(msgpack.packb(job, use_bin_type=True))
PY
it_amqp_publish -e "$KD_AMQP_EXCHANGE" \
    -r "$KD_AMQP_ROUTING_KEY" -C application/msgpack -p <"$IT_DIR/body.bin"
it_wait_results 1 60
it_expect py '.outcome=="succeeded" and .session_id > 0'
it_log "PASS"
