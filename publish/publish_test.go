package publish_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/stats"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

func closeCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hasTopic(msgs []testenv.Received, suffix, payload string) bool {
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, suffix) && (payload == "" || string(m.Payload) == payload) {
			return true
		}
	}
	return false
}

// Messages on every topic match their JSON Schema; status is retained and
// says online, then stopped.
func TestMessagesMatchSchema(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	detSchema, statsSchema := schemas(t)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/#", nil)
	p := newPublisher(t, cfg, t.TempDir(), true)
	waitConnected(t, p)

	for i := range 3 {
		m := frame("front", uint64(100+i), i*2)
		m.Detections = append(m.Detections, detection.Detection{ClassID: 7, Label: "\"quoted\" ünïcode", Score: 1, Box: [4]float32{0, 0, 1920, 1080}})
		if err := p.PublishDetections(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.PublishDetections(frame("back", 1, 0)); err != nil {
		t.Fatal(err)
	}
	stats := publish.Stats{
		Provider: "cpu", Uptime: 90 * time.Second,
		Cameras: map[string]publish.CameraStats{"front": {FPS: 1.97, Frames: 300, Drops: 2}},
		Latency: map[string]stats.Percentiles{"infer": {P50: 480, P90: 510, P99: 600, Max: 700}},
		Memory:  publish.Memory{RSSBytes: 300 << 20, HeapBytes: 20 << 20},
	}
	if err := p.PublishStats(stats); err != nil {
		t.Fatal(err)
	}
	msgs := sub.WaitFor(t, 20*time.Second, "3 front + 1 back detections, stats, status", func(m []testenv.Received) bool {
		return len(seqs(t, m, "front")) == 3 && len(seqs(t, m, "back")) == 1 &&
			hasTopic(m, "/stats", "") && hasTopic(m, "/status", "online")
	})
	for _, m := range msgs {
		switch {
		case strings.HasSuffix(m.Topic, "/detections"):
			validate(t, detSchema, m.Payload)
		case strings.HasSuffix(m.Topic, "/stats"):
			validate(t, statsSchema, m.Payload)
		}
	}
	checkContiguous(t, seqs(t, msgs, "front"), 1, 3)
	var d received
	for _, m := range msgs {
		if m.Topic == "stardetr/dev1/front/detections" {
			_ = json.Unmarshal(m.Payload, &d)
		}
	}
	if d.V != 1 || d.Device != "dev1" || d.Frame != 102 || len(d.Detections) != 5 || d.Detections[4].Label != "\"quoted\" ünïcode" {
		t.Fatalf("last front message decoded as %+v", d)
	}
	t.Logf("example detections message: %s", msgs[len(msgs)-1].Payload)

	if err := p.Close(closeCtx(t)); err != nil {
		t.Fatal(err)
	}
	// A fresh subscriber sees the retained status: stopped.
	late := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/status", nil)
	late.WaitFor(t, 10*time.Second, "retained stopped", func(m []testenv.Received) bool { return hasTopic(m, "/status", "stopped") })

	if err := p.PublishDetections(frame("front", 1, 0)); err == nil {
		t.Fatal("PublishDetections after Close succeeded")
	}
}

// The broker goes away for 20 s in the middle of a stream of messages and
// comes back: every seq arrives, in order.
func TestBrokerOutageLosesNothing(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.Keepalive = 2 * time.Second
	cfg.ConnectTimeout = time.Second
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil)
	p := newPublisher(t, cfg, t.TempDir(), true)
	waitConnected(t, p)

	const rate = 40 // messages/s
	n := uint64(0)
	send := func(d time.Duration) {
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		end := time.After(d)
		for {
			select {
			case <-tick.C:
				n++
				if err := p.PublishDetections(frame("cam", n, 3)); err != nil {
					t.Fatal(err)
				}
			case <-end:
				return
			}
		}
	}
	send(2 * time.Second)
	b.Stop()
	send(20 * time.Second)
	if p.Metrics().Connected {
		t.Fatal("publisher still reports a connection with the broker down")
	}
	if d := p.Metrics().QueueDepth; d == 0 {
		t.Fatal("nothing queued during the outage")
	}
	b.Start()
	send(2 * time.Second)

	msgs := sub.WaitFor(t, 60*time.Second, "every seq", func(m []testenv.Received) bool {
		u, _ := firstArrivals(seqs(t, m, "cam"))
		return uint64(len(u)) >= n
	})
	uniq, dups := firstArrivals(seqs(t, msgs, "cam"))
	checkContiguous(t, uniq, 1, n)
	m := p.Metrics()
	t.Logf("sent %d messages across a 20 s outage: all arrived in order, %d duplicates; metrics %+v", n, dups, m)
	if m.Dropped != 0 || m.ConnectFailures == 0 {
		t.Fatalf("metrics %+v: want no drops and some failed connection attempts", m)
	}
}

// The publisher is stopped while the broker is down and started again: what
// it had queued arrives after the broker returns, and seq continues.
func TestQueueSurvivesPublisherRestart(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	state := t.TempDir()
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.ConnectTimeout = time.Second
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil)

	p1 := newPublisher(t, cfg, state, true)
	waitConnected(t, p1)
	for i := range 10 {
		if err := p1.PublishDetections(frame("cam", uint64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	sub.WaitFor(t, 20*time.Second, "first 10", func(m []testenv.Received) bool { return len(seqs(t, m, "cam")) >= 10 })
	// A subscriber can have a message before its publisher has the broker's PUBACK: a message
	// leaves the queue only on its PUBACK, so the outage starts once all 10 are acknowledged
	// (else the unacknowledged ones stay queued, correctly, and the count below is off).
	testenv.WaitFor(t, 20*time.Second, "the first 10 acknowledged", func() bool { return p1.Metrics().QueueDepth == 0 })
	b.Stop()
	for i := range 50 {
		if err := p1.PublishDetections(frame("cam", uint64(10+i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p1.Close(closeCtx(t)); err != nil {
		t.Fatal(err)
	}
	if d := p1.Metrics().QueueDepth; d != 50 {
		t.Fatalf("first run left %d messages queued, want 50", d)
	}

	p2 := newPublisher(t, cfg, state, true)
	if d := p2.Metrics().QueueDepth; d != 50 {
		t.Fatalf("second run loaded %d queued messages, want 50", d)
	}
	for i := range 10 {
		if err := p2.PublishDetections(frame("cam", uint64(60+i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	b.Start()
	msgs := sub.WaitFor(t, 30*time.Second, "all 70", func(m []testenv.Received) bool {
		u, _ := firstArrivals(seqs(t, m, "cam"))
		return len(u) >= 70
	})
	uniq, dups := firstArrivals(seqs(t, msgs, "cam"))
	checkContiguous(t, uniq, 1, 70)
	t.Logf("70 of 70 arrived in order across a publisher restart with the broker down (%d duplicates)", dups)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := newPKI(t, dir, "good")
	other := newPKI(t, dir, "other")
	b := testenv.StartMosquitto(t, "cafile "+good.caFile+"\ncertfile "+good.certFile+"\nkeyfile "+good.keyFile+"\n")

	t.Run("trusted CA", func(t *testing.T) {
		t.Parallel()
		cfg := publish.DefaultConfig()
		cfg.Brokers = []string{b.URL("mqtts")}
		cfg.TLS.CA = good.caFile
		sub := testenv.Subscribe(t, b.URL("mqtts"), "stardetr/dev1/+/detections", &tls.Config{RootCAs: good.pool})
		p := newPublisher(t, cfg, t.TempDir(), true)
		if err := p.PublishDetections(frame("cam", 1, 2)); err != nil {
			t.Fatal(err)
		}
		sub.WaitFor(t, 20*time.Second, "a message over TLS", func(m []testenv.Received) bool { return len(seqs(t, m, "cam")) == 1 })
	})
	t.Run("wrong CA", func(t *testing.T) {
		t.Parallel()
		cfg := publish.DefaultConfig()
		cfg.Brokers = []string{b.URL("mqtts")}
		cfg.TLS.CA = other.caFile
		p := newPublisher(t, cfg, t.TempDir(), true)
		m := waitFailures(t, p, 2)
		if m.Connected || !strings.Contains(m.LastError.Error(), "mqtt.tls.ca") ||
			!strings.Contains(m.LastError.Error(), "certificate signed by unknown authority") {
			t.Fatalf("want a refused connection naming mqtt.tls.ca, got connected=%v err=%v", m.Connected, m.LastError)
		}
		t.Logf("wrong CA: %v", m.LastError)
	})
}

func waitFailures(t *testing.T, p *publish.Publisher, n uint64) publish.Metrics {
	t.Helper()
	var m publish.Metrics
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%d failed connection attempts", n), func() bool {
		m = p.Metrics()
		return m.ConnectFailures >= n
	})
	return m
}

func TestPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwfile, "camera", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	b := testenv.StartMosquitto(t, "allow_anonymous false\npassword_file "+pwfile+"\n")
	secret := func(pw string) string {
		f := filepath.Join(t.TempDir(), "mqtt-password")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	t.Run("wrong", func(t *testing.T) {
		t.Parallel()
		cfg := publish.DefaultConfig()
		cfg.Brokers = []string{b.URL("mqtt")}
		cfg.Username, cfg.PasswordFile = "camera", secret("wrong")
		p := newPublisher(t, cfg, t.TempDir(), true)
		if err := p.PublishDetections(frame("cam", 1, 0)); err != nil {
			t.Fatal(err)
		}
		m := waitFailures(t, p, 3)
		if m.Connected || !strings.Contains(m.LastError.Error(), "mqtt.password") {
			t.Fatalf("want a refused connection naming mqtt.password, got connected=%v err=%v", m.Connected, m.LastError)
		}
		if m.QueueDepth != 1 {
			t.Fatalf("the message should wait in the queue: %+v", m)
		}
		t.Logf("wrong password: %v (after %d attempts)", m.LastError, m.ConnectFailures)
	})
	t.Run("right", func(t *testing.T) {
		t.Parallel()
		cfg := publish.DefaultConfig()
		cfg.Brokers = []string{b.URL("mqtt")}
		cfg.Username, cfg.PasswordFile = "camera", secret("s3cret")
		p := newPublisher(t, cfg, t.TempDir(), true)
		waitConnected(t, p)
	})
	// A secret handed over through a pipe can be read once: New connects with what the
	// config's Validate read instead of reading the file again (which would block on the pipe).
	t.Run("read once", func(t *testing.T) {
		t.Parallel()
		cfg := publish.DefaultConfig()
		cfg.Brokers = []string{b.URL("mqtt")}
		cfg.Username, cfg.PasswordFile = "camera", onceFile(t, "s3cret\n")
		p := newPublisher(t, cfg, t.TempDir(), true) // Validate, then New
		waitConnected(t, p)
	})
}

// onceFile is a named pipe that yields content to its first reader only: the writer removes
// it before the reader sees the end, so a second read finds no file instead of blocking.
func onceFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "once")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// The writer's open blocks until a reader opens the pipe; a non-blocking open for reading
	// in the cleanup releases it if no reader came.
	written := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			written <- err
			return
		}
		_, err = f.WriteString(content)
		if rerr := os.Remove(path); err == nil {
			err = rerr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		written <- err
	}()
	t.Cleanup(func() {
		if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		if err := <-written; err != nil {
			t.Errorf("writing %s: %v", path, err)
		}
	})
	return path
}

// With the broker away, a small queue overflows: the oldest messages go,
// counted; the newest arrive in order once the broker is back.
func TestQueueFullDropsOldest(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil) // persistent session
	b.Stop()
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.Queue.MaxMB = 1
	p := newPublisher(t, cfg, t.TempDir(), true)
	const total = 400
	for i := range total {
		if err := p.PublishDetections(frame("cam", uint64(i), 40)); err != nil { // ~4 KB each
			t.Fatal(err)
		}
	}
	m := p.Metrics()
	if m.Dropped == 0 || m.Dropped+uint64(m.QueueDepth) != total || m.QueueBytes > 1<<20 {
		t.Fatalf("metrics %+v: want drops, dropped+depth=%d, bytes <= 1 MiB", m, total)
	}
	if got := metricValue(t, p, "stardetr_mqtt_dropped_total"); got != float64(m.Dropped) {
		t.Fatalf("stardetr_mqtt_dropped_total = %v, want %d", got, m.Dropped)
	}

	b.Start()
	first := uint64(total-m.QueueDepth) + 1
	waitNewest(t, sub, m.QueueDepth, first, total)
	t.Logf("queue of 1 MiB: %d of %d dropped oldest-first, seq %d..%d delivered in order", m.Dropped, total, first, total)
}

func TestEmbeddedBroker(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + itoa(port)
	cfg := publish.DefaultConfig()
	cfg.Embedded.Enabled = true
	cfg.Embedded.Listen = addr
	cfg.Brokers = []string{"mqtt://" + addr}
	p := newPublisher(t, cfg, t.TempDir(), true)
	if got := p.EmbeddedAddr(); got != addr {
		t.Fatalf("EmbeddedAddr() = %q, want %q", got, addr)
	}
	waitConnected(t, p)
	detSchema, _ := schemas(t)
	sub := testenv.Subscribe(t, "mqtt://"+addr, "stardetr/dev1/#", nil)
	for i := range 20 {
		if err := p.PublishDetections(frame("door", uint64(i), 2)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := sub.WaitFor(t, 20*time.Second, "20 messages and status", func(m []testenv.Received) bool {
		return len(seqs(t, m, "door")) == 20 && hasTopic(m, "/status", "online")
	})
	checkContiguous(t, seqs(t, msgs, "door"), 1, 20)
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/detections") {
			validate(t, detSchema, m.Payload)
		}
	}
}

// ws:// brokers work like mqtt:// ones (mosquitto's websockets listener).
func TestWebSocketBroker(t *testing.T) {
	t.Parallel()
	wsPort := testenv.FreePort(t)
	b := testenv.StartMosquitto(t, "listener "+itoa(wsPort)+" 127.0.0.1\nprotocol websockets\n")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{"mqtt://127.0.0.1:1", "ws://127.0.0.1:" + itoa(wsPort) + "/mqtt"} // the first is refused: tried in order
	cfg.ConnectTimeout = time.Second
	p := newPublisher(t, cfg, t.TempDir(), true)
	waitConnected(t, p)
	if m := p.Metrics(); !strings.HasPrefix(m.Broker, "ws://") {
		t.Fatalf("connected to %q, want the ws:// broker", m.Broker)
	}
	for i := range 5 {
		if err := p.PublishDetections(frame("cam", uint64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := sub.WaitFor(t, 20*time.Second, "5 messages over websockets", func(m []testenv.Received) bool { return len(seqs(t, m, "cam")) == 5 })
	checkContiguous(t, seqs(t, msgs, "cam"), 1, 5)
}

// With Options.Stats set, stats are published every stats_interval and match their schema.
func TestPeriodicStats(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	_, statsSchema := schemas(t)
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/stats", nil)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.StatsInterval = 100 * time.Millisecond
	p, err := publish.New(cfg, publish.Options{DeviceID: "dev1", StateDir: t.TempDir(), Logger: testLogger(t),
		Stats: func() publish.Stats {
			return publish.Stats{Provider: "cpu", Uptime: time.Second}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(closeCtx(t))
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := sub.WaitFor(t, 20*time.Second, "3 stats messages", func(m []testenv.Received) bool { return len(m) >= 3 })
	for _, m := range msgs {
		validate(t, statsSchema, m.Payload)
	}
}
