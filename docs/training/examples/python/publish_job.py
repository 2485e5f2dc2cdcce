#!/usr/bin/env python3
"""Publish one elevator call job to kone-dispatch (docs/job-format.md), the way an integrator's
application would: msgpack body, persistent, message_id = job_id, mandatory, publisher confirms.

Settings from the environment (defaults: the dev stack of docs/dev-stack.md at offset 0):
  KD_AMQP_HOST, KD_AMQP_PORT      RabbitMQ over TLS (127.0.0.1, 5671)
  KD_AMQP_CA_FILE                 the CA that signed the broker's certificate (.dev/tls/ca.pem)
  AMQP_USER, AMQP_PASSWORD        (guest / guest on the dev stack only)
  KD_AMQP_EXCHANGE, KD_AMQP_ROUTING_KEY   where jobs go (kone.calls / kone.calls)
  BUILDING, AREA, DESTINATION     the call (building:9990000951, 3000 -> 5000)
Prints the job_id; the result arrives on Kafka topic kone.call.results with that job_id.
Exit 1 when the broker does not confirm the job: publish it again with the SAME job_id.
"""
import os
import ssl
import sys
import time
import uuid

import msgpack  # pip install msgpack
import pika  # pip install pika (1.x)


def env(name, default):
    return os.environ.get(name) or default


def main():
    now = int(time.time() * 1000)  # integer milliseconds: a float would be refused
    job = {
        "v": 1,
        "job_id": "py-" + str(uuid.uuid4()),
        "op": "call",
        "building_id": env("BUILDING", "building:9990000951"),
        "created_at": now,
        "deadline": now + 30_000,  # no call is made after this; at most 10 minutes
        "area": int(env("AREA", "3000")),
        "action": 2,  # a destination call (the building's actions decide what exists)
        "destination": int(env("DESTINATION", "5000")),
        "trace_id": "training-python",
    }
    body = msgpack.packb(job, use_bin_type=True)

    tls = ssl.create_default_context(cafile=env("KD_AMQP_CA_FILE", ".dev/tls/ca.pem"))
    host = env("KD_AMQP_HOST", "127.0.0.1")
    params = pika.ConnectionParameters(
        host,
        int(env("KD_AMQP_PORT", "5671")),
        "/",
        pika.PlainCredentials(env("AMQP_USER", "guest"), env("AMQP_PASSWORD", "guest")),
        ssl_options=pika.SSLOptions(tls, host),
    )
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()  # basic_publish now raises when the broker nacks or returns it
        ch.basic_publish(
            exchange=env("KD_AMQP_EXCHANGE", "kone.calls"),
            routing_key=env("KD_AMQP_ROUTING_KEY", "kone.calls"),
            body=body,
            properties=pika.BasicProperties(
                content_type="application/msgpack",
                delivery_mode=2,  # persistent
                message_id=job["job_id"],
            ),
            mandatory=True,  # unroutable (no queue bound) is an error, not a silent drop
        )
    except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as e:
        print("not confirmed (%s): publish %s again" % (type(e).__name__, job["job_id"]), file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(job["job_id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
