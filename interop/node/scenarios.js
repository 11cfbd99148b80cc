'use strict';
// Warren interop scenarios with amqplib (see interop/README.md for the convention).
// stdout: one PASS/FAIL/SKIP line per scenario, then "amqplib: N passed, M failed".
// stderr: debug output.

const crypto = require('node:crypto');
const { execFile } = require('node:child_process');
const amqp = require('amqplib');

const URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
const RESTART = process.env.BROKER_RESTART || '';
const RUN_ID = process.env.INTEROP_RUN_ID || crypto.randomBytes(4).toString('hex');
const ONLY = (process.env.SCENARIOS || '').split(/[ ,]+/).filter(Boolean);

const debug = (...args) => console.error('[node]', ...args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const name = (scenario, suffix = '') => `interop.node.${scenario}.${RUN_ID}${suffix ? `.${suffix}` : ''}`;

class Skip extends Error {}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function assertEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Resolves once `pred()` is true, polling; rejects after `ms` with `what`. */
async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Per-scenario resources: every connection opened through it is closed at the end, and every
 * queue/exchange registered is deleted from a fresh connection (so cleanup works after failures).
 */
class Ctx {
  constructor() {
    this.conns = [];
    this.queues = [];
    this.exchanges = [];
  }
  async connect(url = URL, opts) {
    const c = await amqp.connect(url, opts);
    c.on('error', (e) => debug('connection error:', e.message));
    this.conns.push(c);
    return c;
  }
  async channel(conn) {
    const c = conn || (await this.connect());
    const ch = await c.createChannel();
    ch.on('error', (e) => debug('channel error:', e.message));
    return ch;
  }
  queue(q) {
    this.queues.push(q);
    return q;
  }
  exchange(x) {
    this.exchanges.push(x);
    return x;
  }
  async cleanup() {
    for (const c of this.conns) await c.close().catch(() => {});
    if (!this.queues.length && !this.exchanges.length) return;
    const c = await amqp.connect(URL);
    c.on('error', () => {});
    try {
      for (const q of this.queues) {
        const ch = await c.createChannel();
        ch.on('error', () => {});
        await ch.deleteQueue(q).catch(() => {});
        await ch.close().catch(() => {});
      }
      for (const x of this.exchanges) {
        const ch = await c.createChannel();
        ch.on('error', () => {});
        await ch.deleteExchange(x).catch(() => {});
        await ch.close().catch(() => {});
      }
    } finally {
      await c.close().catch(() => {});
    }
  }
}

/** Consumes `q` (no-ack) into an array; returns the array. */
async function collect(ch, q, opts = { noAck: true }) {
  const got = [];
  await ch.consume(q, (m) => m && got.push(m), opts);
  return got;
}

const bodies = (msgs) => msgs.map((m) => m.content.toString());

// --- the six tutorials --------------------------------------------------------------------

async function hello_world(ctx) {
  const ch = await ctx.channel();
  const q = ctx.queue(name('hello_world'));
  await ch.assertQueue(q, { durable: false });
  ch.sendToQueue(q, Buffer.from('Hello World!'));
  const got = await collect(ch, q);
  await until(() => got.length === 1, 'the message');
  assertEq(got[0].content.toString(), 'Hello World!', 'body');
  assertEq(got[0].fields.routingKey, q, 'routing key');
  assertEq(got[0].fields.exchange, '', 'exchange');
  assertEq(got[0].fields.redelivered, false, 'redelivered');
}

/** A quorum queue's declare options: durable only, as RabbitMQ 3.10+ requires. */
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

async function work_queues(ctx, scenario = 'work_queues', queueOpts = { durable: true }) {
  const q = ctx.queue(name(scenario));
  const producer = await ctx.channel();
  await producer.assertQueue(q, queueOpts);
  const seen = { fast: [], slow: [] };
  const workers = [];
  for (const [who, delay] of [
    ['slow', 300],
    ['fast', 5],
  ]) {
    const ch = await ctx.channel();
    await ch.assertQueue(q, queueOpts);
    await ch.prefetch(1);
    await ch.consume(
      q,
      (m) => {
        seen[who].push(m.content.toString());
        setTimeout(() => ch.ack(m), delay);
      },
      { noAck: false },
    );
    workers.push(ch);
  }
  const n = 20;
  for (let i = 0; i < n; i++) producer.sendToQueue(q, Buffer.from(`task ${i}`), { persistent: true });
  await until(() => seen.fast.length + seen.slow.length === n, `${n} tasks`, 20000);
  await sleep(400); // every ack sent; nothing may be delivered twice
  const all = [...seen.fast, ...seen.slow].sort();
  assertEq(new Set(all).size, n, 'distinct tasks');
  assertEq(all.length, n, 'deliveries');
  assert(seen.slow.length >= 1, `slow worker got nothing (fast ${seen.fast.length})`);
  assert(
    seen.fast.length >= 3 * seen.slow.length,
    `not fair dispatch: fast worker got ${seen.fast.length}, slow worker ${seen.slow.length}`,
  );
  const left = await producer.checkQueue(q);
  assertEq(left.messageCount, 0, 'messages left in queue');
  return { q, workers };
}

/** Tutorial 2 on a quorum queue: the same fair dispatch; then a task given back (nack,
 * requeue) comes again with x-delivery-count 1, which only a quorum queue adds, and a
 * redeclare as a classic queue is refused with 406 (it is a quorum queue). */
async function work_queues_quorum(ctx) {
  const { q, workers } = await work_queues(ctx, 'work_queues_quorum', QUORUM);
  for (const w of workers) await w.close();
  const ch = await ctx.channel();
  ch.sendToQueue(q, Buffer.from('given back'), { persistent: true });
  const first = await getOne(ch, q, 5000, { noAck: false });
  assertEq(first.content.toString(), 'given back', 'the task');
  ch.nack(first, false, true);
  const again = await getOne(ch, q, 5000, { noAck: false });
  assert(again.fields.redelivered, 'the task came back redelivered');
  assertEq((again.properties.headers || {})['x-delivery-count'], 1, 'x-delivery-count');
  ch.ack(again);
  const other = await ctx.channel();
  let err;
  await other.assertQueue(q, { durable: true }).catch((e) => {
    err = e;
  });
  assert(err && err.code === 406, `redeclared as a classic queue (${err && err.message})`);
}

async function publish_subscribe(ctx) {
  const ch = await ctx.channel();
  const x = ctx.exchange(name('publish_subscribe'));
  await ch.assertExchange(x, 'fanout', { durable: false });
  const subs = [];
  for (let i = 0; i < 2; i++) {
    const sub = await ctx.channel();
    const { queue } = await sub.assertQueue('', { exclusive: true });
    assert(queue.startsWith('amq.gen-'), `server-named queue ${queue}`);
    await sub.bindQueue(queue, x, '');
    subs.push(await collect(sub, queue));
  }
  const logs = ['info: a', 'warning: b', 'error: c'];
  for (const l of logs) ch.publish(x, 'ignored-by-fanout', Buffer.from(l));
  await until(() => subs.every((s) => s.length >= logs.length), 'every log in both queues');
  await sleep(100);
  for (const s of subs) assertEq(bodies(s), logs, 'subscriber got');
}

async function routing(ctx) {
  const ch = await ctx.channel();
  const x = ctx.exchange(name('routing'));
  await ch.assertExchange(x, 'direct', { durable: false });
  const bindings = { errors: ['error'], all: ['info', 'warning', 'error'] };
  const got = {};
  for (const [who, keys] of Object.entries(bindings)) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    for (const k of [...keys, 'end']) await ch.bindQueue(queue, x, k);
    got[who] = await collect(ch, queue);
  }
  for (const k of ['info', 'debug', 'warning', 'error', 'end']) ch.publish(x, k, Buffer.from(`${k} msg`));
  await until(() => Object.values(got).every((g) => g.some((m) => m.fields.routingKey === 'end')), 'end marker');
  assertEq(bodies(got.errors), ['error msg', 'end msg'], 'error queue');
  assertEq(bodies(got.all), ['info msg', 'warning msg', 'error msg', 'end msg'], 'all queue');
}

async function topics(ctx) {
  const ch = await ctx.channel();
  const x = ctx.exchange(name('topics'));
  await ch.assertExchange(x, 'topic', { durable: false });
  const bindings = { q1: ['*.orange.*'], q2: ['*.*.rabbit', 'lazy.#'] };
  const got = {};
  for (const [who, keys] of Object.entries(bindings)) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    for (const k of [...keys, 'end']) await ch.bindQueue(queue, x, k);
    got[who] = await collect(ch, queue);
  }
  const keys = [
    'quick.orange.rabbit',
    'lazy.orange.elephant',
    'quick.orange.fox',
    'lazy.brown.fox',
    'lazy.pink.rabbit',
    'quick.brown.fox',
    'orange',
    'quick.orange.new.rabbit',
    'lazy.orange.new.rabbit',
    'lazy',
    'end',
  ];
  for (const k of keys) ch.publish(x, k, Buffer.from(k));
  await until(() => Object.values(got).every((g) => g.some((m) => m.fields.routingKey === 'end')), 'end marker');
  assertEq(bodies(got.q1), ['quick.orange.rabbit', 'lazy.orange.elephant', 'quick.orange.fox', 'end'], 'q1 (*.orange.*)');
  assertEq(
    bodies(got.q2),
    ['quick.orange.rabbit', 'lazy.orange.elephant', 'lazy.brown.fox', 'lazy.pink.rabbit', 'lazy.orange.new.rabbit', 'lazy', 'end'],
    'q2 (*.*.rabbit, lazy.#)',
  );
}

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

/** Tutorial 6's server: fib(n) on `q`, prefetch 1, answers to reply_to with the correlation id. */
async function rpcServer(ctx, q, replyTos = [], queueOpts = { durable: false }) {
  const ch = await ctx.channel();
  await ch.assertQueue(q, queueOpts);
  await ch.prefetch(1);
  await ch.consume(q, (m) => {
    const n = parseInt(m.content.toString(), 10);
    replyTos.push(m.properties.replyTo);
    ch.sendToQueue(m.properties.replyTo, Buffer.from(String(fib(n))), {
      correlationId: m.properties.correlationId,
    });
    ch.ack(m);
  });
}

async function rpcCalls(ch, q, replyTo, answers) {
  const pending = new Map();
  const results = [];
  for (const n of [0, 1, 10, 20, 25]) {
    const id = crypto.randomUUID();
    pending.set(id, n);
    ch.sendToQueue(q, Buffer.from(String(n)), { correlationId: id, replyTo });
  }
  await until(() => answers.length >= pending.size, 'every RPC reply');
  for (const m of answers) {
    const n = pending.get(m.properties.correlationId);
    assert(n !== undefined, `reply with unknown correlation id ${m.properties.correlationId}`);
    results.push([n, parseInt(m.content.toString(), 10)]);
    pending.delete(m.properties.correlationId);
  }
  results.sort((a, b) => a[0] - b[0]);
  assertEq(results, [[0, 0], [1, 1], [10, 55], [20, 6765], [25, 75025]], 'fib replies');
}

async function rpc(ctx, scenario = 'rpc', queueOpts = undefined) {
  const q = ctx.queue(name(scenario));
  await rpcServer(ctx, q, [], queueOpts);
  const ch = await ctx.channel();
  const { queue: callback } = await ch.assertQueue('', { exclusive: true });
  const answers = await collect(ch, callback);
  await rpcCalls(ch, q, callback, answers);
}

async function rpc_direct_reply_to(ctx, scenario = 'rpc_direct_reply_to', queueOpts = undefined) {
  const q = ctx.queue(name(scenario));
  const replyTos = [];
  await rpcServer(ctx, q, replyTos, queueOpts);
  const ch = await ctx.channel();
  const answers = await collect(ch, 'amq.rabbitmq.reply-to');
  await rpcCalls(ch, q, 'amq.rabbitmq.reply-to', answers);
  // The server sees a rewritten reply_to, and replies arrive under it via the default exchange.
  for (const r of replyTos) assert(r.startsWith('amq.rabbitmq.reply-to.'), `reply_to seen by the server: ${r}`);
  for (const m of answers) {
    assertEq(m.fields.exchange, '', 'reply exchange');
    assert(replyTos.includes(m.fields.routingKey), `reply routing key ${m.fields.routingKey}`);
  }
}

/** Tutorial 6 with the server on a quorum queue: exclusive callback queue, direct reply-to. */
const rpc_quorum = (ctx) => rpc(ctx, 'rpc_quorum', QUORUM);
const rpc_direct_reply_to_quorum = (ctx) => rpc_direct_reply_to(ctx, 'rpc_direct_reply_to_quorum', QUORUM);

// --- publisher confirms -------------------------------------------------------------------

async function confirmChannel(ctx, q) {
  const conn = await ctx.connect();
  const ch = await conn.createConfirmChannel();
  ch.on('error', (e) => debug('confirm channel error:', e.message));
  await ch.assertQueue(q, { durable: true });
  return ch;
}

/** Publishes with a per-message callback; resolves on ack, rejects on nack. */
function publishConfirmed(ch, q, body) {
  return new Promise((resolve, reject) => {
    ch.sendToQueue(q, body, { persistent: true }, (err) => (err ? reject(new Error(`nacked: ${err}`)) : resolve()));
  });
}

async function confirms_single(ctx) {
  const q = ctx.queue(name('confirms_single'));
  const ch = await confirmChannel(ctx, q);
  for (let i = 0; i < 50; i++) await publishConfirmed(ch, q, Buffer.from(`m${i}`));
  assertEq((await ch.checkQueue(q)).messageCount, 50, 'queued after 50 confirmed publishes');
}

async function confirms_batch(ctx) {
  const q = ctx.queue(name('confirms_batch'));
  const ch = await confirmChannel(ctx, q);
  for (let b = 0; b < 5; b++) {
    for (let i = 0; i < 100; i++) ch.sendToQueue(q, Buffer.from(`b${b}m${i}`), { persistent: true });
    await ch.waitForConfirms();
  }
  assertEq((await ch.checkQueue(q)).messageCount, 500, 'queued after 5 confirmed batches');
}

async function confirms_async(ctx) {
  const q = ctx.queue(name('confirms_async'));
  const ch = await confirmChannel(ctx, q);
  const n = 2000;
  let acked = 0;
  let nacked = 0;
  for (let i = 0; i < n; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: i % 2 === 0 }, (err) => (err ? nacked++ : acked++));
  }
  await until(() => acked + nacked === n, `${n} confirms`, 20000);
  assertEq(nacked, 0, 'nacks');
  assertEq((await ch.checkQueue(q)).messageCount, n, 'queued');
}

// --- broker-initiated events and errors -----------------------------------------------------

async function consumer_cancel_on_delete(ctx) {
  const conn = await ctx.connect();
  const ch = await ctx.channel(conn);
  const q = ctx.queue(name('consumer_cancel_on_delete'));
  await ch.assertQueue(q, { durable: false });
  let cancelled = 0;
  const { consumerTag } = await ch.consume(q, (m) => {
    if (m === null) cancelled++;
  });
  assert(consumerTag, 'consumer tag');
  const other = await ctx.channel(conn);
  const { messageCount } = await other.deleteQueue(q);
  assertEq(messageCount, 0, 'deleted message count');
  await until(() => cancelled === 1, 'basic.cancel from the broker');
  // The channel that was cancelled goes on.
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('still here'));
  const m = await getOne(ch, queue);
  assertEq(m.content.toString(), 'still here', 'message after cancel');
}

async function getOne(ch, q, ms = 5000, opts = { noAck: true }) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = await ch.get(q, opts);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no message in ${q}`);
    await sleep(20);
  }
}

async function mandatory_return(ctx) {
  const conn = await ctx.connect();
  const ch = await conn.createConfirmChannel();
  ch.on('error', (e) => debug('channel error:', e.message));
  const x = ctx.exchange(name('mandatory_return'));
  await ch.assertExchange(x, 'direct', { durable: false });
  const events = [];
  ch.on('return', (m) => events.push(['return', m]));
  const body = Buffer.from('nobody wants me');
  await new Promise((resolve, reject) =>
    ch.publish(x, 'no.such.key', body, { mandatory: true, messageId: 'm-1', headers: { h: 'v' } }, (err) => {
      events.push(['ack', err]);
      return err ? reject(new Error('nacked')) : resolve();
    }),
  );
  await until(() => events.length === 2, 'basic.return and basic.ack');
  assertEq(
    events.map((e) => e[0]),
    ['return', 'ack'],
    'basic.return before basic.ack',
  );
  const r = events[0][1];
  assertEq(r.fields.replyCode, 312, 'reply code');
  assertEq(r.fields.replyText, 'NO_ROUTE', 'reply text');
  assertEq(r.fields.exchange, x, 'exchange');
  assertEq(r.fields.routingKey, 'no.such.key', 'routing key');
  assertEq(r.content.toString(), body.toString(), 'returned body');
  assertEq(r.properties.messageId, 'm-1', 'returned message id');
  assertEq(r.properties.headers, { h: 'v' }, 'returned headers');
  // The default exchange and a missing queue: returned the same way.
  const back = new Promise((resolve) => ch.once('return', resolve));
  ch.sendToQueue(name('mandatory_return', 'missing'), Buffer.from('x'), { mandatory: true });
  const r2 = await withTimeout(back, 5000, 'second basic.return');
  assertEq([r2.fields.replyCode, r2.fields.exchange], [312, ''], 'default-exchange return');
}

async function redeclare_406_channel_only(ctx) {
  const conn = await ctx.connect();
  const closed = [];
  conn.on('close', () => closed.push('connection'));
  const ch1 = await ctx.channel(conn);
  const ch2 = await ctx.channel(conn);
  ch1.on('close', () => closed.push('ch1'));
  const q = ctx.queue(name('redeclare_406_channel_only'));
  await ch1.assertQueue(q, { durable: false });
  let err;
  try {
    await ch1.assertQueue(q, { durable: true });
  } catch (e) {
    err = e;
  }
  assert(err, 'redeclare with durable=true succeeded');
  assertEq(err.code, 406, `error code (${err.message})`);
  assert(
    /PRECONDITION_FAILED - inequivalent arg 'durable' for queue '.*' in vhost '\/': received 'true' but current is 'false'/.test(
      err.message,
    ),
    `reply text: ${err.message}`,
  );
  await until(() => closed.includes('ch1'), 'channel 1 closed');
  // The other channel and the connection go on.
  const ok = await ch2.checkQueue(q);
  assertEq(ok.queue, q, 'checkQueue on the other channel');
  ch2.sendToQueue(q, Buffer.from('after 406'));
  assertEq((await getOne(ch2, q)).content.toString(), 'after 406', 'message on the other channel');
  const ch3 = await ctx.channel(conn);
  await ch3.checkQueue(q);
  assert(!closed.includes('connection'), 'the connection closed');
}

async function large_message(ctx) {
  // Default frame_max (131072) and a small one (8192: ~1000 body frames per MiB).
  for (const [url, sizes] of [
    [URL, [5 * 1024 * 1024, 8 * 1024 * 1024 + 7]],
    [URL + (URL.includes('?') ? '&' : '?') + 'frameMax=8192', [3 * 1024 * 1024 + 1]],
  ]) {
    const conn = await ctx.connect(url);
    const ch = await ctx.channel(conn);
    const q = ctx.queue(name('large_message', String(sizes[0])));
    await ch.assertQueue(q, { durable: false });
    const sent = sizes.map((s) => crypto.randomBytes(s));
    for (const b of sent) ch.sendToQueue(q, b);
    const got = await collect(ch, q);
    await until(() => got.length === sent.length, 'the large messages', 30000);
    for (let i = 0; i < sent.length; i++) {
      assertEq(got[i].content.length, sent[i].length, `size of message ${i}`);
      assert(got[i].content.equals(sent[i]), `message ${i} (${sent[i].length} bytes) differs`);
    }
  }
}

async function headers_roundtrip(ctx) {
  const ch = await ctx.channel();
  const q = ctx.queue(name('headers_roundtrip'));
  await ch.assertQueue(q, { durable: false });
  const headers = {
    longstr: 'a long string ✓',
    empty: '',
    bool_t: true,
    bool_f: false,
    int8: { '!': 'int8', value: -128 },
    uint8: { '!': 'uint8', value: 255 },
    int16: { '!': 'int16', value: -32768 },
    uint16: { '!': 'uint16', value: 65535 },
    int32: { '!': 'int32', value: -2147483648 },
    uint32: { '!': 'uint32', value: 4294967295 },
    int64: { '!': 'int64', value: -9007199254740991 },
    float: { '!': 'float', value: 1.5 },
    double: { '!': 'double', value: Math.PI },
    decimal: { '!': 'decimal', value: { places: 2, digits: 12345 } },
    timestamp: { '!': 'timestamp', value: 1700000000 },
    void: null,
    bytes: Buffer.from([0, 1, 2, 254, 255]),
    array: ['s', 1, true, null, [2, 'nested'], { k: 'v' }],
    table: { inner: { deeper: 'yes', n: 42 }, list: [] },
  };
  const props = {
    contentType: 'application/json',
    contentEncoding: 'identity',
    headers,
    deliveryMode: 2,
    priority: 7,
    correlationId: 'corr-1',
    replyTo: 'reply.here',
    expiration: '600000',
    messageId: 'msg-1',
    timestamp: 1700000001,
    type: 'kind',
    userId: 'guest',
    appId: 'interop-node',
  };
  ch.sendToQueue(q, Buffer.from('{}'), props);
  const m = await getOne(ch, q);
  const expected = {
    ...headers,
    int8: -128,
    uint8: 255,
    int16: -32768,
    uint16: 65535,
    int32: -2147483648,
    uint32: 4294967295,
    int64: -9007199254740991,
    float: 1.5,
    double: Math.PI,
    bytes: headers.bytes.toJSON(),
    array: ['s', 1, true, null, [2, 'nested'], { k: 'v' }],
  };
  const h = { ...m.properties.headers };
  if (Buffer.isBuffer(h.bytes)) h.bytes = h.bytes.toJSON();
  for (const k of Object.keys(expected)) assertEq(h[k], expected[k], `header ${k}`);
  assertEq(Object.keys(h).sort(), Object.keys(expected).sort(), 'header names');
  for (const [k, v] of Object.entries(props)) {
    if (k !== 'headers') assertEq(m.properties[k], v, `property ${k}`);
  }
}

// --- broker restart -----------------------------------------------------------------------

function restartBroker() {
  return new Promise((resolve, reject) =>
    execFile(RESTART, [], { timeout: 60000 }, (err, stdout, stderr) => {
      if (stdout) debug('restart stdout:', stdout.trim());
      if (stderr) debug('restart stderr:', stderr.trim());
      return err ? reject(new Error(`BROKER_RESTART failed: ${err.message}`)) : resolve();
    }),
  );
}

async function restart_durable(ctx) {
  if (!RESTART) throw new Skip('BROKER_RESTART is not set');
  const q = ctx.queue(name('restart_durable'));
  const x = ctx.exchange(name('restart_durable', 'x'));
  const transient = ctx.queue(name('restart_durable', 'transient'));
  // amqplib's own connection recovery (a RecoveringPromiseModel) does the reconnecting.
  const conn = await amqp.connect(URL, { recovery: { initialDelay: 100, maxDelay: 500, factor: 1.5 } });
  ctx.conns.push(conn);
  const events = [];
  conn.on('disconnect', (e) => events.push(['disconnect', e && e.message]));
  conn.on('connect', () => events.push(['connect']));
  conn.on('error', (e) => debug('recovering connection error:', e.message));
  let ch = await conn.createConfirmChannel();
  ch.on('error', () => {});
  await ch.assertExchange(x, 'direct', { durable: true });
  await ch.assertQueue(q, { durable: true });
  await ch.bindQueue(q, x, 'k');
  await ch.assertQueue(transient, { durable: false });
  const n = 10;
  for (let i = 0; i < n; i++) ch.publish(x, 'k', Buffer.from(`persistent ${i}`), { persistent: true, messageId: `p${i}` });
  ch.sendToQueue(q, Buffer.from('transient message'), { persistent: false });
  await ch.waitForConfirms();

  await restartBroker();
  await until(() => events.some((e) => e[0] === 'disconnect'), 'the client to notice the restart', 15000);
  await until(() => events.some((e) => e[0] === 'connect'), 'amqplib to reconnect', 20000);
  debug('recovery events:', JSON.stringify(events));

  ch = await conn.createConfirmChannel();
  ch.on('error', () => {});
  const info = await ch.checkQueue(q);
  assertEq(info.messageCount, n, 'persistent messages after restart');
  const msgs = [];
  for (let i = 0; i < n; i++) msgs.push(await getOne(ch, q));
  assertEq(
    msgs.map((m) => m.content.toString()),
    [...Array(n).keys()].map((i) => `persistent ${i}`),
    'bodies after restart',
  );
  assertEq(msgs[0].properties.deliveryMode, 2, 'delivery mode after restart');
  assertEq(msgs[0].properties.messageId, 'p0', 'message id after restart');
  // The durable binding survived: publish through it again.
  ch.publish(x, 'k', Buffer.from('after restart'), { persistent: true });
  await ch.waitForConfirms();
  assertEq((await getOne(ch, q)).content.toString(), 'after restart', 'message through the durable binding');
  // The transient queue is gone.
  const probe = await conn.createChannel();
  let err;
  probe.on('error', () => {});
  await probe.checkQueue(transient).catch((e) => {
    err = e;
  });
  assert(err && err.code === 404, `transient queue still there after restart (${err && err.message})`);
}

// --- TLS ----------------------------------------------------------------------------------

/** $AMQPS_URL with the server verified against $AMQPS_CACERT; with `external`, the client
 * certificate ($AMQPS_CERT, CN=guest) and SASL EXTERNAL. Skips without a TLS listener. */
async function tlsRoundTrip(ctx, external) {
  const url = process.env.AMQPS_URL;
  if (!url) throw new Skip('no AMQPS_URL: this broker has no TLS listener here');
  const fs = require('node:fs');
  const opts = { ca: [fs.readFileSync(process.env.AMQPS_CACERT)], servername: 'localhost' };
  if (external) {
    opts.cert = fs.readFileSync(process.env.AMQPS_CERT);
    opts.key = fs.readFileSync(process.env.AMQPS_KEY);
    opts.credentials = amqp.credentials.external();
  }
  const ch = await ctx.channel(await ctx.connect(url, opts));
  const q = ctx.queue(name(external ? 'tls_external' : 'tls'));
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('over TLS'));
  const m = await getOne(ch, q);
  assertEq(m.content.toString(), 'over TLS', 'body');
}

const tls = (ctx) => tlsRoundTrip(ctx, false);
const tls_external = (ctx) => tlsRoundTrip(ctx, true);

// --- runner -------------------------------------------------------------------------------

const SCENARIOS = [
  ['hello_world', hello_world, 15000],
  ['work_queues', work_queues, 30000],
  ['publish_subscribe', publish_subscribe, 15000],
  ['routing', routing, 15000],
  ['topics', topics, 15000],
  ['rpc', rpc, 15000],
  ['rpc_direct_reply_to', rpc_direct_reply_to, 15000],
  ['confirms_single', confirms_single, 30000],
  ['confirms_batch', confirms_batch, 30000],
  ['confirms_async', confirms_async, 30000],
  ['consumer_cancel_on_delete', consumer_cancel_on_delete, 15000],
  ['mandatory_return', mandatory_return, 15000],
  ['redeclare_406_channel_only', redeclare_406_channel_only, 15000],
  ['large_message', large_message, 60000],
  ['headers_roundtrip', headers_roundtrip, 15000],
  ['restart_durable', restart_durable, 90000],
  ['work_queues_quorum', work_queues_quorum, 30000],
  ['rpc_quorum', rpc_quorum, 15000],
  ['rpc_direct_reply_to_quorum', rpc_direct_reply_to_quorum, 15000],
  ['tls', tls, 15000],
  ['tls_external', tls_external, 15000],
];

async function main() {
  let passed = 0;
  let failed = 0;
  for (const [scenario, fn, ms] of SCENARIOS) {
    if (ONLY.length && !ONLY.includes(scenario)) continue;
    const ctx = new Ctx();
    const started = Date.now();
    try {
      await withTimeout(fn(ctx), ms, scenario);
      console.log(`PASS ${scenario}`);
      passed++;
    } catch (e) {
      if (e instanceof Skip) {
        console.log(`SKIP ${scenario}: ${e.message}`);
      } else {
        console.log(`FAIL ${scenario}: ${String(e && e.message).replace(/\s+/g, ' ')}`);
        debug(scenario, e && e.stack);
        failed++;
      }
    }
    await withTimeout(ctx.cleanup(), 10000, `${scenario} cleanup`).catch((e) => debug('cleanup:', e.message));
    debug(`${scenario}: ${Date.now() - started} ms`);
  }
  console.log(`amqplib: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

process.on('unhandledRejection', (e) => debug('unhandled rejection:', e && e.stack));
main();
