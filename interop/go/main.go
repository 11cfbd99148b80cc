// Warren interop scenarios with amqp091-go (see interop/README.md for the convention).
// stdout: one PASS/FAIL/SKIP line per scenario, then "amqp091-go: N passed, M failed".
// stderr: debug output.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var (
	amqpURL = envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
	restart = os.Getenv("BROKER_RESTART")
	runID   = envOr("INTEROP_RUN_ID", randomHex(4))
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func debugf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "[go] "+format+"\n", args...)
}

func name(scenario string, suffix ...string) string {
	n := "interop.go." + scenario + "." + runID
	for _, s := range suffix {
		n += "." + s
	}
	return n
}

type skip struct{ reason string }

func (s skip) Error() string { return s.reason }

// fail aborts the scenario (recovered in run).
type failure struct{ err error }

func check(err error, what string) {
	if err != nil {
		panic(failure{fmt.Errorf("%s: %w", what, err)})
	}
}

func assert(cond bool, format string, args ...interface{}) {
	if !cond {
		panic(failure{fmt.Errorf(format, args...)})
	}
}

func assertEq(actual, expected interface{}, what string) {
	if !reflect.DeepEqual(actual, expected) {
		panic(failure{fmt.Errorf("%s: expected %#v, got %#v", what, expected, actual)})
	}
}

// ctx tracks what a scenario opened and declared so it can be cleaned up after a failure.
type ctx struct {
	conns     []*amqp.Connection
	queues    []string
	exchanges []string
}

func (c *ctx) dial() *amqp.Connection {
	return c.dialConfig(amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
}

func (c *ctx) dialConfig(cfg amqp.Config) *amqp.Connection {
	conn, err := amqp.DialConfig(amqpURL, cfg)
	check(err, "dial")
	c.conns = append(c.conns, conn)
	return conn
}

func (c *ctx) channel(conn *amqp.Connection) *amqp.Channel {
	if conn == nil {
		conn = c.dial()
	}
	ch, err := conn.Channel()
	check(err, "open channel")
	return ch
}

func (c *ctx) queue(q string) string    { c.queues = append(c.queues, q); return q }
func (c *ctx) exchange(x string) string { c.exchanges = append(c.exchanges, x); return x }

func (c *ctx) cleanup() {
	for _, conn := range c.conns {
		conn.Close()
	}
	if len(c.queues)+len(c.exchanges) == 0 {
		return
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		debugf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	// A failed delete closes its channel, so each delete gets its own.
	for _, q := range c.queues {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
			ch.Close()
		}
	}
	for _, x := range c.exchanges {
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(x, false, false)
			ch.Close()
		}
	}
}

func publish(ch *amqp.Channel, exchange, key string, msg amqp.Publishing) {
	check(ch.PublishWithContext(context.Background(), exchange, key, false, false, msg), "publish")
}

func text(s string) amqp.Publishing { return amqp.Publishing{Body: []byte(s)} }

func consume(ch *amqp.Channel, q string, autoAck bool) <-chan amqp.Delivery {
	d, err := ch.Consume(q, "", autoAck, false, false, false, nil)
	check(err, "consume "+q)
	return d
}

// next waits for one delivery.
func next(d <-chan amqp.Delivery, what string) amqp.Delivery {
	select {
	case m, ok := <-d:
		assert(ok, "delivery channel closed while waiting for %s", what)
		return m
	case <-time.After(10 * time.Second):
		panic(failure{fmt.Errorf("timed out waiting for %s", what)})
	}
}

// untilKey collects bodies from d until a delivery with routing key "end" arrives.
func untilEnd(d <-chan amqp.Delivery) []string {
	var got []string
	for {
		m := next(d, "the end marker")
		got = append(got, string(m.Body))
		if m.RoutingKey == "end" {
			return got
		}
	}
}

func getOne(ch *amqp.Channel, q string) amqp.Delivery {
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := ch.Get(q, true)
		check(err, "basic.get "+q)
		if ok {
			return m
		}
		assert(time.Now().Before(deadline), "no message in %s", q)
		time.Sleep(20 * time.Millisecond)
	}
}

// --- the six tutorials ----------------------------------------------------------------------

func helloWorld(c *ctx) {
	ch := c.channel(nil)
	q := c.queue(name("hello_world"))
	_, err := ch.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare")
	publish(ch, "", q, text("Hello World!"))
	m := next(consume(ch, q, true), "the message")
	assertEq(string(m.Body), "Hello World!", "body")
	assertEq(m.RoutingKey, q, "routing key")
	assertEq(m.Exchange, "", "exchange")
	assertEq(m.Redelivered, false, "redelivered")
}

func workQueues(c *ctx) {
	q := c.queue(name("work_queues"))
	producer := c.channel(nil)
	_, err := producer.QueueDeclare(q, true, false, false, false, nil)
	check(err, "declare")
	var mu sync.Mutex
	seen := map[string][]string{}
	total := 0
	for _, w := range []struct {
		who   string
		delay time.Duration
	}{{"slow", 300 * time.Millisecond}, {"fast", 5 * time.Millisecond}} {
		ch := c.channel(nil)
		check(ch.Qos(1, 0, false), "qos")
		d := consume(ch, q, false)
		w := w
		go func() {
			for m := range d {
				mu.Lock()
				seen[w.who] = append(seen[w.who], string(m.Body))
				total++
				mu.Unlock()
				time.Sleep(w.delay)
				m.Ack(false)
			}
		}()
	}
	n := 20
	for i := 0; i < n; i++ {
		publish(producer, "", q, amqp.Publishing{Body: []byte(fmt.Sprintf("task %d", i)), DeliveryMode: amqp.Persistent})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := total >= n
		mu.Unlock()
		if done {
			break
		}
		assert(time.Now().Before(deadline), "timed out waiting for %d tasks", n)
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	all := append(append([]string{}, seen["fast"]...), seen["slow"]...)
	assertEq(len(all), n, "deliveries")
	distinct := map[string]bool{}
	for _, t := range all {
		distinct[t] = true
	}
	assertEq(len(distinct), n, "distinct tasks")
	assert(len(seen["slow"]) >= 1, "slow worker got nothing")
	assert(len(seen["fast"]) >= 3*len(seen["slow"]), "not fair dispatch: fast %d, slow %d", len(seen["fast"]), len(seen["slow"]))
	info, err := producer.QueueInspect(q)
	check(err, "inspect")
	assertEq(info.Messages, 0, "messages left")
}

func exclusiveQueue(ch *amqp.Channel) string {
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	check(err, "declare server-named queue")
	assert(strings.HasPrefix(q.Name, "amq.gen-"), "server-named queue %q", q.Name)
	return q.Name
}

func publishSubscribe(c *ctx) {
	ch := c.channel(nil)
	x := c.exchange(name("publish_subscribe"))
	check(ch.ExchangeDeclare(x, "fanout", false, false, false, false, nil), "declare exchange")
	var subs []<-chan amqp.Delivery
	for i := 0; i < 2; i++ {
		sub := c.channel(nil)
		q := exclusiveQueue(sub)
		check(sub.QueueBind(q, "", x, false, nil), "bind")
		subs = append(subs, consume(sub, q, true))
	}
	logs := []string{"info: a", "warning: b", "error: c"}
	for _, l := range logs {
		publish(ch, x, "ignored-by-fanout", text(l))
	}
	for i, s := range subs {
		var got []string
		for range logs {
			got = append(got, string(next(s, "a log").Body))
		}
		assertEq(got, logs, fmt.Sprintf("subscriber %d", i))
	}
}

func bindAndConsume(ch *amqp.Channel, x string, keys []string) <-chan amqp.Delivery {
	q := exclusiveQueue(ch)
	for _, k := range append(keys, "end") {
		check(ch.QueueBind(q, k, x, false, nil), "bind "+k)
	}
	return consume(ch, q, true)
}

func routing(c *ctx) {
	ch := c.channel(nil)
	x := c.exchange(name("routing"))
	check(ch.ExchangeDeclare(x, "direct", false, false, false, false, nil), "declare exchange")
	errorsQ := bindAndConsume(ch, x, []string{"error"})
	allQ := bindAndConsume(ch, x, []string{"info", "warning", "error"})
	for _, k := range []string{"info", "debug", "warning", "error", "end"} {
		publish(ch, x, k, text(k+" msg"))
	}
	assertEq(untilEnd(errorsQ), []string{"error msg", "end msg"}, "error queue")
	assertEq(untilEnd(allQ), []string{"info msg", "warning msg", "error msg", "end msg"}, "all queue")
}

func topics(c *ctx) {
	ch := c.channel(nil)
	x := c.exchange(name("topics"))
	check(ch.ExchangeDeclare(x, "topic", false, false, false, false, nil), "declare exchange")
	q1 := bindAndConsume(ch, x, []string{"*.orange.*"})
	q2 := bindAndConsume(ch, x, []string{"*.*.rabbit", "lazy.#"})
	for _, k := range []string{"quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
		"lazy.pink.rabbit", "quick.brown.fox", "orange", "quick.orange.new.rabbit", "lazy.orange.new.rabbit", "lazy", "end"} {
		publish(ch, x, k, text(k))
	}
	assertEq(untilEnd(q1), []string{"quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "end"}, "q1 (*.orange.*)")
	assertEq(untilEnd(q2), []string{"quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit",
		"lazy.orange.new.rabbit", "lazy", "end"}, "q2 (*.*.rabbit, lazy.#)")
}

func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

// rpcServer is tutorial 6's server; it sends every reply_to it sees on replyTos.
func rpcServer(c *ctx, q string, replyTos chan<- string) {
	ch := c.channel(nil)
	_, err := ch.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare rpc queue")
	check(ch.Qos(1, 0, false), "qos")
	d := consume(ch, q, false)
	go func() {
		for m := range d {
			n, _ := strconv.Atoi(string(m.Body))
			if replyTos != nil {
				replyTos <- m.ReplyTo
			}
			ch.PublishWithContext(context.Background(), "", m.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: m.CorrelationId, Body: []byte(strconv.Itoa(fib(n))),
			})
			m.Ack(false)
		}
	}()
}

func rpcCalls(ch *amqp.Channel, q, replyTo string, replies <-chan amqp.Delivery) []amqp.Delivery {
	pending := map[string]int{}
	for _, n := range []int{0, 1, 10, 20, 25} {
		id := randomHex(8)
		pending[id] = n
		publish(ch, "", q, amqp.Publishing{CorrelationId: id, ReplyTo: replyTo, Body: []byte(strconv.Itoa(n))})
	}
	var got [][2]int
	var all []amqp.Delivery
	for len(pending) > 0 {
		m := next(replies, "an RPC reply")
		n, ok := pending[m.CorrelationId]
		assert(ok, "reply with unknown correlation id %q", m.CorrelationId)
		delete(pending, m.CorrelationId)
		v, _ := strconv.Atoi(string(m.Body))
		got = append(got, [2]int{n, v})
		all = append(all, m)
	}
	sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
	assertEq(got, [][2]int{{0, 0}, {1, 1}, {10, 55}, {20, 6765}, {25, 75025}}, "fib replies")
	return all
}

func rpc(c *ctx) {
	q := c.queue(name("rpc"))
	rpcServer(c, q, nil)
	ch := c.channel(nil)
	callback := exclusiveQueue(ch)
	rpcCalls(ch, q, callback, consume(ch, callback, true))
}

func rpcDirectReplyTo(c *ctx) {
	q := c.queue(name("rpc_direct_reply_to"))
	replyTos := make(chan string, 100)
	rpcServer(c, q, replyTos)
	ch := c.channel(nil)
	replies := consume(ch, "amq.rabbitmq.reply-to", true)
	all := rpcCalls(ch, q, "amq.rabbitmq.reply-to", replies)
	seen := map[string]bool{}
	for len(replyTos) > 0 {
		r := <-replyTos
		assert(strings.HasPrefix(r, "amq.rabbitmq.reply-to."), "reply_to seen by the server: %q", r)
		seen[r] = true
	}
	for _, m := range all {
		assertEq(m.Exchange, "", "reply exchange")
		assert(seen[m.RoutingKey], "reply routing key %q", m.RoutingKey)
	}
}

// --- publisher confirms ---------------------------------------------------------------------

func confirmChannel(c *ctx, q string) *amqp.Channel {
	ch := c.channel(nil)
	check(ch.Confirm(false), "confirm.select")
	_, err := ch.QueueDeclare(q, true, false, false, false, nil)
	check(err, "declare")
	return ch
}

func persistent(body string) amqp.Publishing {
	return amqp.Publishing{Body: []byte(body), DeliveryMode: amqp.Persistent}
}

// waitConfirmed reads a Channel.NotifyPublish listener up to delivery tag `tag`: every confirm
// up to it must be an ack. Not DeferredConfirmation.Wait: amqp091-go 1.5.0's
// PublishWithDeferredConfirmWithContext writes the publish frames first and registers the
// DeferredConfirmation after, so a basic.ack its reader goroutine handles in between (the
// publishing goroutine descheduled right after its write for longer than the broker's fsync) is
// dropped and Wait never returns; later amqp091-go releases register before writing. A
// listener gets every confirm, in tag order, whenever it arrives. See interop/README.md.
func waitConfirmed(confirms <-chan amqp.Confirmation, tag uint64, what string) {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case conf, open := <-confirms:
			assert(open, "the channel closed before the confirm of %s", what)
			assert(conf.Ack, "publish %d nacked (waiting for %s)", conf.DeliveryTag, what)
			if conf.DeliveryTag >= tag {
				return
			}
		case <-deadline:
			panic(failure{fmt.Errorf("timed out waiting for the confirm of %s", what)})
		}
	}
}

func confirmsSingle(c *ctx) {
	q := c.queue(name("confirms_single"))
	ch := confirmChannel(c, q)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	for i := 0; i < 50; i++ {
		publish(ch, "", q, persistent(fmt.Sprintf("m%d", i)))
		waitConfirmed(confirms, uint64(i+1), fmt.Sprintf("message %d", i))
	}
	info, err := ch.QueueInspect(q)
	check(err, "inspect")
	assertEq(info.Messages, 50, "queued")
}

func confirmsBatch(c *ctx) {
	q := c.queue(name("confirms_batch"))
	ch := confirmChannel(c, q)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	tag := uint64(0)
	for b := 0; b < 5; b++ {
		for i := 0; i < 100; i++ {
			publish(ch, "", q, persistent(fmt.Sprintf("b%dm%d", b, i)))
		}
		for i := 0; i < 100; i++ {
			select {
			case conf := <-confirms:
				tag++
				assertEq(conf.DeliveryTag, tag, "confirm delivery tag")
				assert(conf.Ack, "message %d nacked", tag)
			case <-time.After(10 * time.Second):
				panic(failure{fmt.Errorf("timed out waiting for confirms of batch %d", b)})
			}
		}
	}
	info, err := ch.QueueInspect(q)
	check(err, "inspect")
	assertEq(info.Messages, 500, "queued")
}

func confirmsAsync(c *ctx) {
	q := c.queue(name("confirms_async"))
	ch := confirmChannel(c, q)
	acks, nacks := ch.NotifyConfirm(make(chan uint64, 1), make(chan uint64, 1))
	n := 2000
	done := make(chan [2]int)
	go func() {
		acked, nacked := 0, 0
		for acked+nacked < n {
			select {
			case <-acks:
				acked++
			case <-nacks:
				nacked++
			case <-time.After(15 * time.Second):
				done <- [2]int{acked, nacked}
				return
			}
		}
		done <- [2]int{acked, nacked}
	}()
	for i := 0; i < n; i++ {
		m := text(fmt.Sprintf("m%d", i))
		if i%2 == 0 {
			m.DeliveryMode = amqp.Persistent
		}
		publish(ch, "", q, m)
	}
	r := <-done
	assertEq(r, [2]int{n, 0}, "acks, nacks")
	info, err := ch.QueueInspect(q)
	check(err, "inspect")
	assertEq(info.Messages, n, "queued")
}

// --- broker-initiated events and errors -----------------------------------------------------

func consumerCancelOnDelete(c *ctx) {
	conn := c.dial()
	ch := c.channel(conn)
	q := c.queue(name("consumer_cancel_on_delete"))
	_, err := ch.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare")
	cancels := ch.NotifyCancel(make(chan string, 1))
	d, err := ch.Consume(q, "ctag-interop", false, false, false, false, nil)
	check(err, "consume")
	other := c.channel(conn)
	purged, err := other.QueueDelete(q, false, false, false)
	check(err, "delete")
	assertEq(purged, 0, "deleted message count")
	select {
	case tag := <-cancels:
		assertEq(tag, "ctag-interop", "cancelled consumer tag")
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("no basic.cancel from the broker")})
	}
	select {
	case _, ok := <-d:
		assert(!ok, "a delivery after the cancel")
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("the delivery channel was not closed after basic.cancel")})
	}
	// The channel goes on.
	q2 := exclusiveQueue(ch)
	publish(ch, "", q2, text("still here"))
	assertEq(string(getOne(ch, q2).Body), "still here", "message after cancel")
}

func mandatoryReturn(c *ctx) {
	ch := c.channel(nil)
	check(ch.Confirm(false), "confirm.select")
	x := c.exchange(name("mandatory_return"))
	check(ch.ExchangeDeclare(x, "direct", false, false, false, false, nil), "declare exchange")
	returns := ch.NotifyReturn(make(chan amqp.Return, 2))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	msg := amqp.Publishing{Body: []byte("nobody wants me"), MessageId: "m-1", Headers: amqp.Table{"h": "v"}}
	check(ch.PublishWithContext(context.Background(), x, "no.such.key", true, false, msg), "publish")
	// amqp091-go delivers returns and confirms on separate Go channels, so the order they were
	// sent in is not observable here; both must arrive.
	var r amqp.Return
	select {
	case r = <-returns:
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("no basic.return")})
	}
	select {
	case conf := <-confirms:
		assert(conf.Ack, "returned message was nacked")
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("no basic.ack after the return")})
	}
	assertEq(r.ReplyCode, uint16(312), "reply code")
	assertEq(r.ReplyText, "NO_ROUTE", "reply text")
	assertEq(r.Exchange, x, "exchange")
	assertEq(r.RoutingKey, "no.such.key", "routing key")
	assertEq(string(r.Body), "nobody wants me", "body")
	assertEq(r.MessageId, "m-1", "message id")
	assertEq(r.Headers, amqp.Table{"h": "v"}, "headers")
	check(ch.PublishWithContext(context.Background(), "", name("mandatory_return", "missing"), true, false, text("x")), "publish")
	select {
	case r = <-returns:
		assertEq([]interface{}{r.ReplyCode, r.Exchange}, []interface{}{uint16(312), ""}, "default-exchange return")
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("no basic.return from the default exchange")})
	}
}

func redeclare406ChannelOnly(c *ctx) {
	conn := c.dial()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch1 := c.channel(conn)
	ch2 := c.channel(conn)
	ch1Closed := ch1.NotifyClose(make(chan *amqp.Error, 1))
	q := c.queue(name("redeclare_406_channel_only"))
	_, err := ch1.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare")
	_, err = ch1.QueueDeclare(q, true, false, false, false, nil)
	var aerr *amqp.Error
	assert(errors.As(err, &aerr), "redeclare with durable=true: expected *amqp.Error, got %v", err)
	assertEq(aerr.Code, 406, "reply code")
	assertEq(aerr.Server, true, "initiated by the server")
	want := fmt.Sprintf("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': received 'true' but current is 'false'", q)
	assertEq(aerr.Reason, want, "reply text")
	select {
	case e := <-ch1Closed:
		assert(e != nil && e.Code == 406, "channel close notification: %v", e)
	case <-time.After(5 * time.Second):
		panic(failure{errors.New("channel 1 close not notified")})
	}
	_, err = ch2.QueueDeclarePassive(q, false, false, false, false, nil)
	check(err, "passive declare on the other channel")
	publish(ch2, "", q, text("after 406"))
	assertEq(string(getOne(ch2, q).Body), "after 406", "message on the other channel")
	ch3 := c.channel(conn)
	_, err = ch3.QueueInspect(q)
	check(err, "inspect on a new channel")
	select {
	case e := <-connClosed:
		panic(failure{fmt.Errorf("connection closed: %v", e)})
	default:
	}
	assert(!conn.IsClosed(), "connection closed")
}

func largeMessage(c *ctx) {
	for _, tc := range []struct {
		frameSize int
		sizes     []int
	}{
		{0, []int{5 << 20, 8<<20 + 7}}, // frame_max as the broker proposes
		{8192, []int{3<<20 + 1}},       // ~400 body frames per MiB
	} {
		conn := c.dialConfig(amqp.Config{FrameSize: tc.frameSize, Heartbeat: 10 * time.Second})
		ch := c.channel(conn)
		q := c.queue(name("large_message", strconv.Itoa(tc.sizes[0])))
		_, err := ch.QueueDeclare(q, false, false, false, false, nil)
		check(err, "declare")
		var sent [][]byte
		for _, s := range tc.sizes {
			b := make([]byte, s)
			rand.Read(b)
			sent = append(sent, b)
			publish(ch, "", q, amqp.Publishing{Body: b})
		}
		d := consume(ch, q, true)
		for i, b := range sent {
			m := next(d, fmt.Sprintf("large message %d", i))
			assertEq(len(m.Body), len(b), fmt.Sprintf("size of message %d", i))
			assert(bytes.Equal(m.Body, b), "message %d (%d bytes) differs", i, len(b))
		}
	}
}

func headersRoundtrip(c *ctx) {
	ch := c.channel(nil)
	q := c.queue(name("headers_roundtrip"))
	_, err := ch.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare")
	ts := time.Unix(1700000000, 0)
	headers := amqp.Table{
		"longstr": "a long string ✓",
		"empty":   "",
		"bool_t":  true,
		"bool_f":  false,
		"uint8":   byte(255),
		"int8":    int8(-128),
		"int16":   int16(-32768),
		"int32":   int32(math.MinInt32),
		"int64":   int64(math.MinInt64),
		"float":   float32(1.5),
		"double":  math.Pi,
		"decimal": amqp.Decimal{Scale: 2, Value: 12345},
		"time":    ts,
		"void":    nil,
		"bytes":   []byte{0, 1, 2, 254, 255},
		"array":   []interface{}{"s", int32(1), true, nil, []interface{}{int64(2), "nested"}, amqp.Table{"k": "v"}},
		"table":   amqp.Table{"inner": amqp.Table{"deeper": "yes", "n": int32(42)}, "list": []interface{}{}},
	}
	check(headers.Validate(), "headers validate")
	msg := amqp.Publishing{
		Headers:         headers,
		ContentType:     "application/json",
		ContentEncoding: "identity",
		DeliveryMode:    amqp.Persistent,
		Priority:        7,
		CorrelationId:   "corr-1",
		ReplyTo:         "reply.here",
		Expiration:      "600000",
		MessageId:       "msg-1",
		Timestamp:       time.Unix(1700000001, 0),
		Type:            "kind",
		UserId:          "guest",
		AppId:           "interop-go",
		Body:            []byte("{}"),
	}
	publish(ch, "", q, msg)
	m := getOne(ch, q)
	// amqp091-go reads 'I' as int32 and 'T' as time.Time (local zone): normalise before comparing.
	got := m.Headers
	if t, ok := got["time"].(time.Time); ok {
		got["time"] = t.UTC()
	}
	headers["time"] = ts.UTC()
	// An empty field array reads back as a nil slice (still typed, so a missing key would differ).
	headers["table"] = amqp.Table{"inner": amqp.Table{"deeper": "yes", "n": int32(42)}, "list": []interface{}(nil)}
	for k, v := range headers {
		assertEq(got[k], v, "header "+k)
	}
	assertEq(len(got), len(headers), "header count")
	assertEq(m.ContentType, msg.ContentType, "content type")
	assertEq(m.ContentEncoding, msg.ContentEncoding, "content encoding")
	assertEq(m.DeliveryMode, msg.DeliveryMode, "delivery mode")
	assertEq(m.Priority, msg.Priority, "priority")
	assertEq(m.CorrelationId, msg.CorrelationId, "correlation id")
	assertEq(m.ReplyTo, msg.ReplyTo, "reply to")
	assertEq(m.Expiration, msg.Expiration, "expiration")
	assertEq(m.MessageId, msg.MessageId, "message id")
	assertEq(m.Timestamp.Unix(), msg.Timestamp.Unix(), "timestamp")
	assertEq(m.Type, msg.Type, "type")
	assertEq(m.UserId, msg.UserId, "user id")
	assertEq(m.AppId, msg.AppId, "app id")
}

// --- client-specific extras ------------------------------------------------------------------

// serverCapabilities: every capability RabbitMQ 3.10.8 advertises in connection.start.
func serverCapabilities(c *ctx) {
	conn := c.dial()
	caps, ok := conn.Properties["capabilities"].(amqp.Table)
	assert(ok, "no capabilities table in server properties: %v", conn.Properties)
	for _, cap := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
		"consumer_cancel_notify", "connection.blocked", "consumer_priorities", "authentication_failure_close",
		"per_consumer_qos", "direct_reply_to"} {
		assertEq(caps[cap], true, "capability "+cap)
	}
}

// heartbeatIdle: a 1 s heartbeat, an idle connection for 3.5 s (both sides must send heartbeats or
// the other closes it), then a round trip on it.
func heartbeatIdle(c *ctx) {
	conn := c.dialConfig(amqp.Config{Heartbeat: time.Second})
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch := c.channel(conn)
	select {
	case e := <-closed:
		panic(failure{fmt.Errorf("connection closed while idle: %v", e)})
	case <-time.After(3500 * time.Millisecond):
	}
	q := exclusiveQueue(ch)
	publish(ch, "", q, text("after idling"))
	assertEq(string(getOne(ch, q).Body), "after idling", "message after idling")
}

// --- broker restart -------------------------------------------------------------------------

// redial is what an amqp091-go application writes (the library has no recovery): retry with backoff.
func redial(deadline time.Time) *amqp.Connection {
	delay := 100 * time.Millisecond
	for {
		conn, err := amqp.Dial(amqpURL)
		if err == nil {
			return conn
		}
		assert(time.Now().Before(deadline), "could not reconnect: %v", err)
		debugf("reconnect: %v", err)
		time.Sleep(delay)
		if delay < time.Second {
			delay *= 2
		}
	}
}

func restartDurable(c *ctx) {
	if restart == "" {
		panic(skip{"BROKER_RESTART is not set"})
	}
	q := c.queue(name("restart_durable"))
	x := c.exchange(name("restart_durable", "x"))
	transient := c.queue(name("restart_durable", "transient"))
	conn := c.dial()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch := c.channel(conn)
	check(ch.Confirm(false), "confirm.select")
	check(ch.ExchangeDeclare(x, "direct", true, false, false, false, nil), "declare exchange")
	_, err := ch.QueueDeclare(q, true, false, false, false, nil)
	check(err, "declare")
	check(ch.QueueBind(q, "k", x, false, nil), "bind")
	_, err = ch.QueueDeclare(transient, false, false, false, false, nil)
	check(err, "declare transient")
	n := 10
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n+1))
	for i := 0; i < n; i++ {
		publish(ch, x, "k", amqp.Publishing{Body: []byte(fmt.Sprintf("persistent %d", i)), DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("p%d", i)})
	}
	publish(ch, "", transient, text("transient"))
	waitConfirmed(confirms, uint64(n), "the last persistent message")

	out, err := exec.Command(restart).CombinedOutput()
	check(err, "BROKER_RESTART: "+strings.TrimSpace(string(out)))
	select {
	case e := <-closed:
		debugf("connection closed by restart: %v", e)
	case <-time.After(15 * time.Second):
		panic(failure{errors.New("the client did not notice the restart")})
	}
	conn = redial(time.Now().Add(20 * time.Second))
	c.conns = append(c.conns, conn)
	ch = c.channel(conn)
	check(ch.Confirm(false), "confirm.select")
	info, err := ch.QueueInspect(q)
	check(err, "inspect after restart")
	assertEq(info.Messages, n, "persistent messages after restart")
	for i := 0; i < n; i++ {
		m := getOne(ch, q)
		assertEq(string(m.Body), fmt.Sprintf("persistent %d", i), "body after restart")
		assertEq(m.DeliveryMode, amqp.Persistent, "delivery mode after restart")
		assertEq(m.MessageId, fmt.Sprintf("p%d", i), "message id after restart")
	}
	confirms = ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	publish(ch, x, "k", persistent("after restart"))
	waitConfirmed(confirms, 1, "the message after restart")
	assertEq(string(getOne(ch, q).Body), "after restart", "message through the durable binding")
	probe := c.channel(conn)
	_, err = probe.QueueInspect(transient)
	var aerr *amqp.Error
	assert(errors.As(err, &aerr) && aerr.Code == 404, "transient queue after restart: %v", err)
}

// --- TLS --------------------------------------------------------------------------------------

// tlsConfig verifies the server against $AMQPS_CACERT; with external, it also presents the
// client certificate ($AMQPS_CERT, CN=guest). Skips when the broker has no TLS listener here.
func tlsConfig(external bool) (string, *tls.Config) {
	url := os.Getenv("AMQPS_URL")
	if url == "" {
		panic(skip{"no AMQPS_URL: this broker has no TLS listener here"})
	}
	pem, err := os.ReadFile(os.Getenv("AMQPS_CACERT"))
	check(err, "read AMQPS_CACERT")
	roots := x509.NewCertPool()
	assert(roots.AppendCertsFromPEM(pem), "no certificate in AMQPS_CACERT")
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if external {
		cert, err := tls.LoadX509KeyPair(os.Getenv("AMQPS_CERT"), os.Getenv("AMQPS_KEY"))
		check(err, "load the client certificate")
		cfg.Certificates = []tls.Certificate{cert}
	}
	return url, cfg
}

func tlsRoundTrip(c *ctx, external bool) {
	url, cfg := tlsConfig(external)
	dial := amqp.DialTLS
	if external {
		dial = amqp.DialTLS_ExternalAuth
	}
	conn, err := dial(url, cfg)
	check(err, "dial over TLS")
	c.conns = append(c.conns, conn)
	ch := c.channel(conn)
	q := c.queue(name(map[bool]string{false: "tls", true: "tls_external"}[external]))
	_, err = ch.QueueDeclare(q, false, false, false, false, nil)
	check(err, "declare")
	publish(ch, "", q, text("over TLS"))
	assertEq(string(getOne(ch, q).Body), "over TLS", "body")
}

func tlsPlain(c *ctx)    { tlsRoundTrip(c, false) }
func tlsExternal(c *ctx) { tlsRoundTrip(c, true) }

// --- runner ---------------------------------------------------------------------------------

type scenario struct {
	name    string
	fn      func(*ctx)
	timeout time.Duration
}

var scenarios = []scenario{
	{"hello_world", helloWorld, 15 * time.Second},
	{"work_queues", workQueues, 30 * time.Second},
	{"publish_subscribe", publishSubscribe, 15 * time.Second},
	{"routing", routing, 15 * time.Second},
	{"topics", topics, 15 * time.Second},
	{"rpc", rpc, 15 * time.Second},
	{"rpc_direct_reply_to", rpcDirectReplyTo, 15 * time.Second},
	{"confirms_single", confirmsSingle, 30 * time.Second},
	{"confirms_batch", confirmsBatch, 30 * time.Second},
	{"confirms_async", confirmsAsync, 30 * time.Second},
	{"consumer_cancel_on_delete", consumerCancelOnDelete, 15 * time.Second},
	{"mandatory_return", mandatoryReturn, 15 * time.Second},
	{"redeclare_406_channel_only", redeclare406ChannelOnly, 15 * time.Second},
	{"large_message", largeMessage, 60 * time.Second},
	{"headers_roundtrip", headersRoundtrip, 15 * time.Second},
	{"restart_durable", restartDurable, 90 * time.Second},
	{"server_capabilities", serverCapabilities, 15 * time.Second},
	{"heartbeat_idle", heartbeatIdle, 15 * time.Second},
	{"tls", tlsPlain, 15 * time.Second},
	{"tls_external", tlsExternal, 15 * time.Second},
}

// run executes one scenario in a goroutine; a scenario still running at its timeout is abandoned
// (its connections are closed by cleanup, which unblocks it).
func run(s scenario) (err error) {
	c := &ctx{}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				switch e := r.(type) {
				case failure:
					done <- e.err
				case skip:
					done <- e
				default:
					done <- fmt.Errorf("panic: %v", r)
				}
				return
			}
			done <- nil
		}()
		s.fn(c)
	}()
	select {
	case err = <-done:
	case <-time.After(s.timeout):
		err = fmt.Errorf("timed out after %v", s.timeout)
	}
	cleaned := make(chan struct{})
	go func() { c.cleanup(); close(cleaned) }()
	select {
	case <-cleaned:
	case <-time.After(10 * time.Second):
		debugf("%s: cleanup timed out", s.name)
	}
	return err
}

func main() {
	only := map[string]bool{}
	for _, s := range strings.FieldsFunc(os.Getenv("SCENARIOS"), func(r rune) bool { return r == ' ' || r == ',' }) {
		only[s] = true
	}
	passed, failed := 0, 0
	for _, s := range scenarios {
		if len(only) > 0 && !only[s.name] {
			continue
		}
		start := time.Now()
		err := run(s)
		var sk skip
		switch {
		case err == nil:
			fmt.Printf("PASS %s\n", s.name)
			passed++
		case errors.As(err, &sk):
			fmt.Printf("SKIP %s: %s\n", s.name, sk.reason)
		default:
			fmt.Printf("FAIL %s: %s\n", s.name, strings.Join(strings.Fields(err.Error()), " "))
			failed++
		}
		debugf("%s: %v", s.name, time.Since(start).Round(time.Millisecond))
	}
	fmt.Printf("amqp091-go: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
