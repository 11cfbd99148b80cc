# frozen_string_literal: true
# Warren interop scenarios with Bunny (see interop/README.md for the convention).
# stdout: one PASS/FAIL/SKIP line per scenario, then "bunny: N passed, M failed".
# stderr: debug output and Bunny's own log (warnings and up).

require "bunny"
require "bigdecimal"
require "logger"
require "securerandom"
require "timeout"
require "open3"

$stdout.sync = true
AMQP_URL = ENV.fetch("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
RESTART = ENV.fetch("BROKER_RESTART", "")
RUN_ID = ENV.fetch("INTEROP_RUN_ID", "") == "" ? SecureRandom.hex(4) : ENV["INTEROP_RUN_ID"]
ONLY = ENV.fetch("SCENARIOS", "").split(/[ ,]+/)
LOG = Logger.new($stderr, level: Logger::WARN, progname: "bunny")

class Skip < StandardError; end
class Failure < StandardError; end

def debug(msg) = warn("[ruby] #{msg}")

def name(scenario, suffix = nil) = ["interop.ruby.#{scenario}.#{RUN_ID}", suffix].compact.join(".")

def check(cond, msg) = (cond or raise Failure, msg)

def assert_eq(actual, expected, what)
  return if actual == expected

  raise Failure, "#{what}: expected #{expected.inspect}, got #{actual.inspect}"
end

# Polls the block until it is truthy; fails after `secs`.
def wait_until(what, secs = 10)
  deadline = Time.now + secs
  until (v = yield)
    raise Failure, "timed out waiting for #{what}" if Time.now > deadline

    sleep 0.01
  end
  v
end

# What one scenario opened and declared, cleaned up from a fresh connection afterwards.
class Ctx
  attr_reader :conns, :queues, :exchanges

  def initialize
    @conns = []
    @queues = []
    @exchanges = []
  end

  def connect(**opts)
    c = Bunny.new(AMQP_URL, logger: LOG, automatically_recover: false, **opts)
    c.start
    @conns << c
    c
  end

  def channel(conn = nil) = (conn || connect).create_channel

  def queue(q) = (@queues << q; q)

  def exchange(x) = (@exchanges << x; x)

  def cleanup
    @conns.each { |c| c.close rescue nil }
    return if @queues.empty? && @exchanges.empty?

    c = Bunny.new(AMQP_URL, logger: LOG, automatically_recover: false)
    c.start
    # A failed delete closes its channel, so each delete gets its own.
    @queues.each { |q| (ch = c.create_channel).queue_delete(q) rescue nil; ch&.close rescue nil }
    @exchanges.each { |x| (ch = c.create_channel).exchange_delete(x) rescue nil; ch&.close rescue nil }
    c.close
  rescue StandardError => e
    debug "cleanup: #{e.class}: #{e.message}"
  end
end

# Subscribes (auto-ack) and collects [delivery_info, properties, body] triples.
def collect(q)
  got = Queue.new
  q.subscribe { |di, props, body| got << [di, props, body] }
  got
end

def take(got, what, secs = 10)
  Timeout.timeout(secs) { got.pop }
rescue Timeout::Error
  raise Failure, "timed out waiting for #{what}"
end

# Bodies from `got` up to and including the one routed with key "end".
def until_end(got)
  out = []
  loop do
    di, _, body = take(got, "the end marker")
    out << body
    return out if di.routing_key == "end"
  end
end

def get_one(ch, q, secs = 5)
  wait_until("a message in #{q}", secs) do
    di, props, body = ch.basic_get(q, manual_ack: false)
    di && [di, props, body]
  end
end

# --- the six tutorials ------------------------------------------------------------------------

def hello_world(ctx)
  ch = ctx.channel
  q = ch.queue(ctx.queue(name("hello_world")), durable: false)
  ch.default_exchange.publish("Hello World!", routing_key: q.name)
  di, _, body = take(collect(q), "the message")
  assert_eq body, "Hello World!", "body"
  assert_eq di.routing_key, q.name, "routing key"
  assert_eq di.exchange, "", "exchange"
  assert_eq di.redelivered?, false, "redelivered"
end

def work_queues(ctx)
  qn = ctx.queue(name("work_queues"))
  producer = ctx.channel
  producer.queue(qn, durable: true)
  seen = { fast: [], slow: [] }
  lock = Mutex.new
  { slow: 0.3, fast: 0.005 }.each do |who, delay|
    ch = ctx.channel
    ch.prefetch(1)
    ch.queue(qn, durable: true).subscribe(manual_ack: true) do |di, _, body|
      lock.synchronize { seen[who] << body }
      sleep delay
      ch.ack(di.delivery_tag)
    end
  end
  n = 20
  n.times { |i| producer.default_exchange.publish("task #{i}", routing_key: qn, persistent: true) }
  wait_until("#{n} tasks", 20) { lock.synchronize { seen.values.sum(&:size) >= n } }
  sleep 0.4
  all = lock.synchronize { seen[:fast] + seen[:slow] }
  assert_eq all.size, n, "deliveries"
  assert_eq all.uniq.size, n, "distinct tasks"
  check seen[:slow].size >= 1, "slow worker got nothing"
  check seen[:fast].size >= 3 * seen[:slow].size,
        "not fair dispatch: fast worker got #{seen[:fast].size}, slow worker #{seen[:slow].size}"
  assert_eq producer.queue_declare(qn, passive: true).message_count, 0, "messages left"
end

def exclusive_queue(ch)
  q = ch.queue("", exclusive: true)
  check q.name.start_with?("amq.gen-"), "server-named queue #{q.name}"
  q
end

def publish_subscribe(ctx)
  ch = ctx.channel
  x = ch.fanout(ctx.exchange(name("publish_subscribe")), durable: false)
  subs = Array.new(2) do
    sub = ctx.channel
    q = exclusive_queue(sub).bind(x.name)
    collect(q)
  end
  logs = ["info: a", "warning: b", "error: c"]
  logs.each { |l| x.publish(l, routing_key: "ignored-by-fanout") }
  subs.each_with_index do |s, i|
    assert_eq(logs.map { take(s, "a log")[2] }, logs, "subscriber #{i}")
  end
end

def bind_and_collect(ch, x, keys)
  q = exclusive_queue(ch)
  (keys + ["end"]).each { |k| q.bind(x, routing_key: k) }
  collect(q)
end

def routing(ctx)
  ch = ctx.channel
  x = ch.direct(ctx.exchange(name("routing")), durable: false)
  errors = bind_and_collect(ch, x, ["error"])
  all = bind_and_collect(ch, x, %w[info warning error])
  %w[info debug warning error end].each { |k| x.publish("#{k} msg", routing_key: k) }
  assert_eq until_end(errors), ["error msg", "end msg"], "error queue"
  assert_eq until_end(all), ["info msg", "warning msg", "error msg", "end msg"], "all queue"
end

def topics(ctx)
  ch = ctx.channel
  x = ch.topic(ctx.exchange(name("topics")), durable: false)
  q1 = bind_and_collect(ch, x, ["*.orange.*"])
  q2 = bind_and_collect(ch, x, ["*.*.rabbit", "lazy.#"])
  %w[quick.orange.rabbit lazy.orange.elephant quick.orange.fox lazy.brown.fox lazy.pink.rabbit quick.brown.fox
     orange quick.orange.new.rabbit lazy.orange.new.rabbit lazy end].each { |k| x.publish(k, routing_key: k) }
  assert_eq until_end(q1), %w[quick.orange.rabbit lazy.orange.elephant quick.orange.fox end], "q1 (*.orange.*)"
  assert_eq until_end(q2), %w[quick.orange.rabbit lazy.orange.elephant lazy.brown.fox lazy.pink.rabbit
                              lazy.orange.new.rabbit lazy end], "q2 (*.*.rabbit, lazy.#)"
end

def fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2)

# Tutorial 6's server; records every reply_to it sees.
def rpc_server(ctx, qn, reply_tos = [])
  ch = ctx.channel
  ch.prefetch(1)
  ch.queue(qn, durable: false).subscribe(manual_ack: true) do |di, props, body|
    reply_tos << props.reply_to
    ch.default_exchange.publish(fib(body.to_i).to_s, routing_key: props.reply_to, correlation_id: props.correlation_id)
    ch.ack(di.delivery_tag)
  end
end

def rpc_calls(ch, qn, reply_to, replies)
  pending = {}
  [0, 1, 10, 20, 25].each do |n|
    id = SecureRandom.uuid
    pending[id] = n
    ch.default_exchange.publish(n.to_s, routing_key: qn, correlation_id: id, reply_to: reply_to)
  end
  got = []
  all = []
  until pending.empty?
    di, props, body = take(replies, "an RPC reply")
    n = pending.delete(props.correlation_id)
    check !n.nil?, "reply with unknown correlation id #{props.correlation_id.inspect}"
    got << [n, body.to_i]
    all << di
  end
  assert_eq got.sort, [[0, 0], [1, 1], [10, 55], [20, 6765], [25, 75_025]], "fib replies"
  all
end

def rpc(ctx)
  qn = ctx.queue(name("rpc"))
  rpc_server(ctx, qn)
  ch = ctx.channel
  callback = exclusive_queue(ch)
  rpc_calls(ch, qn, callback.name, collect(callback))
end

def rpc_direct_reply_to(ctx)
  qn = ctx.queue(name("rpc_direct_reply_to"))
  reply_tos = []
  rpc_server(ctx, qn, reply_tos)
  ch = ctx.channel
  replies = Queue.new
  # Bunny has no queue object for the pseudo-queue: consume it with a raw consumer, no-ack.
  consumer = Bunny::Consumer.new(ch, "amq.rabbitmq.reply-to", ch.generate_consumer_tag, true)
  consumer.on_delivery { |di, props, body| replies << [di, props, body] }
  ch.basic_consume_with(consumer)
  all = rpc_calls(ch, qn, "amq.rabbitmq.reply-to", replies)
  reply_tos.each { |r| check r.start_with?("amq.rabbitmq.reply-to."), "reply_to seen by the server: #{r}" }
  all.each do |di|
    assert_eq di.exchange, "", "reply exchange"
    check reply_tos.include?(di.routing_key), "reply routing key #{di.routing_key}"
  end
end

# --- publisher confirms -----------------------------------------------------------------------

def confirm_channel(ctx, qn, callback = nil)
  ch = ctx.channel
  ch.confirm_select(callback)
  [ch, ch.queue(qn, durable: true)]
end

def confirms_single(ctx)
  qn = ctx.queue(name("confirms_single"))
  ch, q = confirm_channel(ctx, qn)
  50.times do |i|
    ch.default_exchange.publish("m#{i}", routing_key: qn, persistent: true)
    check ch.wait_for_confirms, "message #{i} nacked"
  end
  assert_eq q.message_count, 50, "queued"
end

def confirms_batch(ctx)
  qn = ctx.queue(name("confirms_batch"))
  ch, q = confirm_channel(ctx, qn)
  5.times do |b|
    100.times { |i| ch.default_exchange.publish("b#{b}m#{i}", routing_key: qn, persistent: true) }
    check ch.wait_for_confirms, "batch #{b}: nacks #{ch.nacked_set.to_a}"
    check ch.unconfirmed_set.empty?, "batch #{b}: unconfirmed #{ch.unconfirmed_set.size}"
  end
  assert_eq q.message_count, 500, "queued"
end

def confirms_async(ctx)
  qn = ctx.queue(name("confirms_async"))
  lock = Mutex.new
  confirmed = {} # delivery tag => ack?
  floor = 1 # every tag below it is confirmed
  max_tag = 0
  callback = lambda do |tag, multiple, nack|
    lock.synchronize do
      if multiple
        (floor..tag).each { |t| confirmed[t] = !nack unless confirmed.key?(t) }
        floor = tag + 1 if tag >= floor
      else
        confirmed[tag] = !nack unless confirmed.key?(tag)
      end
    end
  end
  ch, q = confirm_channel(ctx, qn, callback)
  n = 2000
  n.times do |i|
    ch.default_exchange.publish("m#{i}", routing_key: qn, persistent: i.even?)
    max_tag = ch.next_publish_seq_no - 1
  end
  assert_eq max_tag, n, "last publish sequence number"
  wait_until("#{n} confirms", 20) { lock.synchronize { confirmed.size >= n } }
  lock.synchronize do
    assert_eq confirmed.keys.sort, (1..n).to_a, "confirmed tags"
    assert_eq confirmed.values.count(false), 0, "nacks"
  end
  assert_eq q.message_count, n, "queued"
end

# --- broker-initiated events and errors -------------------------------------------------------

def consumer_cancel_on_delete(ctx)
  conn = ctx.connect
  ch = ctx.channel(conn)
  q = ch.queue(ctx.queue(name("consumer_cancel_on_delete")), durable: false)
  cancels = Queue.new
  consumer = q.subscribe(consumer_tag: "ctag-interop", on_cancellation: ->(cancel) { cancels << cancel }) { nil }
  other = ctx.channel(conn)
  assert_eq other.queue_delete(q.name).message_count, 0, "deleted message count"
  cancel = take(cancels, "basic.cancel from the broker", 5)
  assert_eq cancel.consumer_tag, "ctag-interop", "cancelled consumer tag"
  assert_eq consumer.consumer_tag, "ctag-interop", "consumer tag"
  check ch.open?, "channel closed after basic.cancel"
  q2 = exclusive_queue(ch)
  ch.default_exchange.publish("still here", routing_key: q2.name)
  assert_eq get_one(ch, q2.name)[2], "still here", "message after cancel"
end

def mandatory_return(ctx)
  ch = ctx.channel
  events = Queue.new
  ch.confirm_select(->(_tag, _multiple, nack) { events << [:ack, nack] })
  x = ch.direct(ctx.exchange(name("mandatory_return")), durable: false)
  x.on_return { |ri, props, body| events << [:return, ri, props, body] }
  x.publish("nobody wants me", routing_key: "no.such.key", mandatory: true, message_id: "m-1", headers: { "h" => "v" })
  first = take(events, "basic.return", 5)
  second = take(events, "basic.ack", 5)
  assert_eq [first[0], second[0]], %i[return ack], "basic.return before basic.ack"
  assert_eq second[1], false, "returned message nacked"
  _, ri, props, body = first
  assert_eq ri.reply_code, 312, "reply code"
  assert_eq ri.reply_text, "NO_ROUTE", "reply text"
  assert_eq ri.exchange, x.name, "exchange"
  assert_eq ri.routing_key, "no.such.key", "routing key"
  assert_eq body, "nobody wants me", "body"
  assert_eq props.message_id, "m-1", "message id"
  assert_eq props.headers, { "h" => "v" }, "headers"
  returns = Queue.new
  # One object: Bunny routes a return to the exchange object cached under its name, and every
  # #default_exchange call makes (and caches) a new one.
  dx = ch.default_exchange
  dx.on_return { |ri2, _, _| returns << ri2 }
  dx.publish("x", routing_key: name("mandatory_return", "missing"), mandatory: true)
  ri2 = take(returns, "basic.return from the default exchange", 5)
  assert_eq [ri2.reply_code, ri2.exchange], [312, ""], "default-exchange return"
end

def redeclare_406_channel_only(ctx)
  conn = ctx.connect
  ch1 = ctx.channel(conn)
  ch2 = ctx.channel(conn)
  qn = ctx.queue(name("redeclare_406_channel_only"))
  ch1.queue(qn, durable: false)
  err = nil
  begin
    # queue_declare, not #queue: Bunny caches declared queues by name per channel.
    ch1.queue_declare(qn, durable: true)
  rescue Bunny::PreconditionFailed => e
    err = e
  end
  check err, "redeclare with durable=true succeeded"
  assert_eq err.channel_close.reply_code, 406, "reply code"
  assert_eq err.channel_close.reply_text,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '#{qn}' in vhost '/': " \
            "received 'true' but current is 'false'", "reply text"
  wait_until("channel 1 to close", 5) { ch1.closed? }
  assert_eq ch2.queue_declare(qn, passive: true).queue, qn, "passive declare on the other channel"
  ch2.default_exchange.publish("after 406", routing_key: qn)
  assert_eq get_one(ch2, qn)[2], "after 406", "message on the other channel"
  ch3 = ctx.channel(conn)
  ch3.queue_declare(qn, passive: true)
  check conn.open?, "the connection closed"
end

def large_message(ctx)
  [[{}, [5 << 20, (8 << 20) + 7]], [{ frame_max: 8192 }, [(3 << 20) + 1]]].each do |opts, sizes|
    ch = ctx.channel(ctx.connect(**opts))
    q = ch.queue(ctx.queue(name("large_message", sizes[0].to_s)), durable: false)
    sent = sizes.map { |s| SecureRandom.random_bytes(s) }
    sent.each { |b| ch.default_exchange.publish(b, routing_key: q.name) }
    got = collect(q)
    sent.each_with_index do |b, i|
      body = take(got, "large message #{i}", 30)[2]
      assert_eq body.bytesize, b.bytesize, "size of message #{i}"
      check body.b == b.b, "message #{i} (#{b.bytesize} bytes) differs"
    end
  end
end

def binary(v)
  case v
  when String then v.b
  when Hash then v.to_h { |k, x| [k.b, binary(x)] }
  when Array then v.map { |x| binary(x) }
  else v
  end
end

def headers_roundtrip(ctx)
  ch = ctx.channel
  q = ch.queue(ctx.queue(name("headers_roundtrip")), durable: false)
  ts = Time.at(1_700_000_000)
  headers = {
    "longstr" => "a long string ✓",
    "empty" => "",
    "symbol" => :sym,
    "bool_t" => true,
    "bool_f" => false,
    "int64" => -(2**63),
    "int64_max" => 2**63 - 1,
    "float32" => AMQ::Protocol::Float32Bit.new(1.5),
    "double" => Math::PI,
    "decimal" => BigDecimal("12345"),
    "time" => ts,
    "void" => nil,
    "array" => ["s", 1, true, nil, [2, "nested"], { "k" => "v" }, []],
    "table" => { "inner" => { "deeper" => "yes", "n" => 42 }, "empty" => {} },
  }
  props = {
    content_type: "application/json",
    content_encoding: "identity",
    headers: headers,
    delivery_mode: 2,
    priority: 7,
    correlation_id: "corr-1",
    reply_to: "reply.here",
    expiration: "600000",
    message_id: "msg-1",
    timestamp: 1_700_000_001,
    type: "kind",
    user_id: "guest",
    app_id: "interop-ruby",
  }
  ch.default_exchange.publish("{}", routing_key: q.name, **props)
  _, got_props, body = get_one(ch, q.name)
  assert_eq body, "{}", "body"
  # amq-protocol reads strings back as binary (ASCII-8BIT): compare bytes.
  expected = binary(headers.merge("symbol" => "sym", "float32" => 1.5))
  got = binary(got_props[:headers])
  expected.each { |k, v| assert_eq got[k], v, "header #{k}" }
  assert_eq got.keys.sort, expected.keys.sort, "header names"
  props.each do |k, v|
    next if k == :headers

    actual = got_props[k]
    actual = actual.to_i if k == :timestamp
    assert_eq actual, v, "property #{k}"
  end
end

# --- broker restart ---------------------------------------------------------------------------

def restart_durable(ctx)
  raise Skip, "BROKER_RESTART is not set" if RESTART.empty?

  qn = ctx.queue(name("restart_durable"))
  xn = ctx.exchange(name("restart_durable", "x"))
  transient = ctx.queue(name("restart_durable", "transient"))
  # Bunny's own automatic recovery reconnects and re-opens the channel.
  conn = ctx.connect(automatically_recover: true, network_recovery_interval: 0.5, recovery_attempts: 60)
  recovered = Queue.new
  conn.after_recovery_completed { recovered << true }
  ch = conn.create_channel
  ch.confirm_select
  x = ch.direct(xn, durable: true)
  q = ch.queue(qn, durable: true).bind(x, routing_key: "k")
  ch.queue(transient, durable: false)
  # A live consumer on a server-named exclusive queue: Bunny re-declares, re-binds and re-consumes it.
  live = Queue.new
  ch2 = conn.create_channel
  ch2.queue("", exclusive: true).bind(x, routing_key: "live").subscribe { |_, _, body| live << body }
  n = 10
  n.times { |i| x.publish("persistent #{i}", routing_key: "k", persistent: true, message_id: "p#{i}") }
  ch.default_exchange.publish("transient", routing_key: transient)
  check ch.wait_for_confirms, "persistent messages nacked"

  out, status = Open3.capture2e(RESTART)
  check status.success?, "BROKER_RESTART failed: #{out.strip}"
  take(recovered, "Bunny to recover the connection", 30)
  check conn.open?, "connection not open after recovery"
  # Bunny recovery re-declared the transient queue; drop the objects and look at what survived.
  probe = conn.create_channel
  assert_eq probe.queue_declare(qn, passive: true).message_count, n, "persistent messages after restart"
  n.times do |i|
    _, props, body = get_one(probe, qn)
    assert_eq body, "persistent #{i}", "body after restart"
    assert_eq props[:delivery_mode], 2, "delivery mode after restart"
    assert_eq props[:message_id], "p#{i}", "message id after restart"
  end
  probe.confirm_select
  probe.basic_publish("after restart", xn, "k", persistent: true)
  check probe.wait_for_confirms, "publish after restart nacked"
  assert_eq get_one(probe, qn)[2], "after restart", "message through the durable binding"
  probe.basic_publish("to the recovered consumer", xn, "live")
  assert_eq take(live, "a delivery to the recovered consumer"), "to the recovered consumer", "recovered consumer"
  # The recovered channel (the one from before the restart) works too.
  assert_eq q.message_count, 0, "queue via the recovered channel"
  assert_eq ch.queue_declare(transient, passive: true).message_count, 0, "transient queue (re-declared by recovery) is empty"
end

# --- TLS ------------------------------------------------------------------------------------

# $AMQPS_URL with the server verified against $AMQPS_CACERT; with external, the client certificate
# ($AMQPS_CERT, CN=guest) and SASL EXTERNAL. Skips when the broker has no TLS listener here.
def tls_round_trip(external)
  url = ENV.fetch("AMQPS_URL", "")
  raise Skip, "no AMQPS_URL: this broker has no TLS listener here" if url.empty?
  opts = { tls: true, verify_peer: true, tls_ca_certificates: [ENV.fetch("AMQPS_CACERT")] }
  opts.merge!(tls_cert: ENV.fetch("AMQPS_CERT"), tls_key: ENV.fetch("AMQPS_KEY"), auth_mechanism: "EXTERNAL") if external
  conn = Bunny.new(url, logger: LOG, automatically_recover: false, **opts)
  conn.start
  begin
    ch = conn.create_channel
    q = name(external ? "tls_external" : "tls")
    ch.queue(q)
    ch.default_exchange.publish("over TLS", routing_key: q)
    _di, _props, body = get_one(ch, q)
    assert_eq(body, "over TLS", "body")
    ch.queue_delete(q)
  ensure
    conn.close
  end
end

def tls(_ctx) = tls_round_trip(false)
def tls_external(_ctx) = tls_round_trip(true)

# --- runner -----------------------------------------------------------------------------------

SCENARIOS = [
  [:hello_world, 15], [:work_queues, 30], [:publish_subscribe, 15], [:routing, 15], [:topics, 15],
  [:rpc, 15], [:rpc_direct_reply_to, 15], [:confirms_single, 30], [:confirms_batch, 30],
  [:confirms_async, 30], [:consumer_cancel_on_delete, 15], [:mandatory_return, 15],
  [:redeclare_406_channel_only, 15], [:large_message, 60], [:headers_roundtrip, 15], [:restart_durable, 90],
  [:tls, 15], [:tls_external, 15],
].freeze

passed = 0
failed = 0
SCENARIOS.each do |scenario, secs|
  next unless ONLY.empty? || ONLY.include?(scenario.to_s)

  ctx = Ctx.new
  started = Time.now
  begin
    Timeout.timeout(secs) { send(scenario, ctx) }
    puts "PASS #{scenario}"
    passed += 1
  rescue Skip => e
    puts "SKIP #{scenario}: #{e.message}"
  rescue Exception => e # rubocop:disable Lint/RescueException -- Timeout::Error and Bunny errors alike
    raise if e.is_a?(Interrupt)

    puts "FAIL #{scenario}: #{"#{e.class}: " unless e.is_a?(Failure)}#{e.message.gsub(/\s+/, " ")}"
    debug "#{scenario}: #{e.class}: #{e.message}\n  #{e.backtrace&.first(8)&.join("\n  ")}"
    failed += 1
  end
  begin
    Timeout.timeout(10) { ctx.cleanup }
  rescue Timeout::Error
    debug "#{scenario}: cleanup timed out"
  end
  debug format("%s: %d ms", scenario, ((Time.now - started) * 1000).round)
end
puts "bunny: #{passed} passed, #{failed} failed"
exit(failed.zero? ? 0 : 1)
