#!/usr/bin/env node
// Publish one elevator call job to kone-dispatch (docs/job-format.md), the way an integrator's
// application would: msgpack body, persistent, messageId = job_id, mandatory, publisher
// confirms. The same settings as ../python/publish_job.py (environment, dev-stack defaults).
// Prints the job_id; exit 1 when the broker does not confirm it (publish again, SAME job_id).
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const net = require('net');
const amqp = require('amqplib'); // npm install (package.json): amqplib 0.10
const { encode } = require('@msgpack/msgpack'); // whole Numbers encode as msgpack integers

const env = (name, dflt) => process.env[name] || dflt;

async function main() {
  const now = Date.now(); // an integer: msgpack writes it as an integer, as the format needs
  const job = {
    v: 1,
    job_id: 'node-' + crypto.randomUUID(),
    op: 'call',
    building_id: env('BUILDING', 'building:9990000951'),
    created_at: now,
    deadline: now + 30000,
    area: parseInt(env('AREA', '3000'), 10),
    action: 2,
    destination: parseInt(env('DESTINATION', '5000'), 10),
    trace_id: 'training-node',
  };
  const host = env('KD_AMQP_HOST', '127.0.0.1');
  const conn = await amqp.connect(
    {
      protocol: 'amqps',
      hostname: host,
      port: parseInt(env('KD_AMQP_PORT', '5671'), 10),
      username: env('AMQP_USER', 'guest'),
      password: env('AMQP_PASSWORD', 'guest'),
      vhost: '/',
    },
    { ca: [fs.readFileSync(env('KD_AMQP_CA_FILE', '.dev/tls/ca.pem'))], servername: net.isIP(host) ? undefined : host },
  );
  try {
    const ch = await conn.createConfirmChannel();
    let returned = false;
    ch.on('return', () => { returned = true; }); // mandatory and no queue bound
    ch.publish(env('KD_AMQP_EXCHANGE', 'kone.calls'), env('KD_AMQP_ROUTING_KEY', 'kone.calls'),
      Buffer.from(encode(job)), {
        contentType: 'application/msgpack',
        persistent: true,
        messageId: job.job_id,
        mandatory: true,
      });
    await ch.waitForConfirms(); // rejects when the broker nacks
    if (returned) throw new Error('unroutable');
    console.log(job.job_id);
  } catch (e) {
    console.error(`not confirmed (${e.message}): publish ${job.job_id} again`);
    process.exitCode = 1;
  } finally {
    await conn.close();
  }
}

main().catch((e) => { console.error(e.message); process.exitCode = 1; });
