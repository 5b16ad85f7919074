package publish_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// One flipped byte in queued message 20 of 171 costs that message only: the other 170
// arrive in order, and the loss is counted and logged once for its segment.
func TestCorruptQueuedMessageCostsOne(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil)
	state := t.TempDir()
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	p := newPublisher(t, cfg, state, false) // never connects: everything stays queued
	for i := range 171 {
		if err := p.PublishDetections(frame("cam", uint64(i), 3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(closeCtx(t)); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(state, "mqtt-queue", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %q, want one", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for range 19 { // to message 20 (seq 20)
		_, n, ok := diskqueue.DecodeHeader(data[off:], 1<<30)
		if !ok {
			t.Fatalf("record at %d does not decode", off)
		}
		off += 20 + n
	}
	data[off+40] ^= 0x01
	if err := os.WriteFile(segs[0], data, 0o640); err != nil {
		t.Fatal(err)
	}

	var logs testenv.LogBuffer
	p2, err := publish.New(cfg, publish.Options{DeviceID: "dev1", StateDir: state,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close(closeCtx(t))
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := sub.WaitFor(t, 30*time.Second, "170 messages", func(r []testenv.Received) bool {
		u, _ := firstArrivals(seqs(t, r, "cam"))
		return len(u) >= 170
	})
	uniq, _ := firstArrivals(seqs(t, msgs, "cam"))
	checkContiguous(t, uniq[:19], 1, 19)
	checkContiguous(t, uniq[19:], 21, 171)
	if m := p2.Metrics(); m.Corrupt != 1 || metricValue(t, p2, "stardetr_mqtt_corrupt_records_total") != 1 {
		t.Fatalf("corrupt count %d, want 1 (also in stardetr_mqtt_corrupt_records_total)", m.Corrupt)
	}
	if n := logs.Count(`level=WARN msg="queue segment has corrupt records`); n != 1 || logs.Count("messages_lost=1") != 1 {
		t.Fatalf("%d WARN lines about the damaged segment, want 1 with messages_lost=1: %q", n, logs.String())
	}
}

// A small real file system (tmpfs) filled while the broker is down: publishing never fails,
// the oldest messages go (counted, logged at most once per 10 s, queue degraded in health);
// once space is freed and the broker is back, the newest messages arrive in order, and a
// connected publisher keeps publishing on the nearly full disk.
func TestDiskFullWhileBrokerDown(t *testing.T) {
	t.Parallel()
	mnt := testenv.Tmpfs(t, 1<<20)
	b := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil) // persistent session
	b.Stop()
	filler := testenv.Fill(t, mnt, "filler", 400<<10)
	cfg := publish.DefaultConfig() // max_mb 64: the disk, not the limit, is what fills
	cfg.Brokers = []string{b.URL("mqtt")}
	var logs testenv.LogBuffer
	p, err := publish.New(cfg, publish.Options{DeviceID: "dev1", StateDir: mnt, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		RetryDelays: []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(closeCtx(t))
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const total = 2000 // ~4 KB each: 8 MB into 400 KiB
	t0 := time.Now()
	for i := range total {
		if err := p.PublishDetections(frame("cam", uint64(i), 40)); err != nil {
			t.Fatalf("message %d on a full disk: %v", i, err)
		}
	}
	elapsed := time.Since(t0)
	m := p.Metrics()
	if m.Dropped == 0 || m.Dropped+uint64(m.QueueDepth) != total {
		t.Fatalf("metrics %+v: want drops, dropped+depth = %d", m, total)
	}
	if h := p.QueueHealth(); !strings.Contains(h, "file system is full") || metricValue(t, p, "stardetr_mqtt_queue_degraded") != 1 {
		t.Fatalf("queue health %q while dropping on a full disk (stardetr_mqtt_queue_degraded should be 1)", h)
	}
	lines := logs.Count("disk full: dropping")
	if allowed := 1 + int(elapsed/(10*time.Second)); lines < 1 || lines > allowed {
		t.Fatalf("%d disk-full log lines in %v, want 1..%d", lines, elapsed, allowed)
	}

	// Freed, broker back: the queue drains, newest messages in order.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	b.Start()
	first := uint64(total-m.QueueDepth) + 1
	waitNewest(t, sub, m.QueueDepth, first, total)

	// Nearly full again with the broker connected: acknowledged data is reclaimed, nothing
	// is dropped, every message arrives. 300 messages of ~4 KB pass through 32 KiB of free
	// space, each sent once the one before is acknowledged: without reclaiming, the 9th would
	// not fit. (Sent on a timer instead, a slow machine's broker fell 8 messages behind and the
	// disk filled without any fault of the queue.)
	waitConnected(t, p)
	testenv.Fill(t, mnt, "filler2", 32<<10)
	for i := range 300 {
		if err := p.PublishDetections(frame("cam", uint64(total+i), 40)); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("message %d acknowledged", total+i), func() bool { return p.Metrics().QueueDepth == 0 })
	}
	waitNewest(t, sub, m.QueueDepth+300, first, total+300)
	if d := p.Metrics().Dropped; d != m.Dropped {
		t.Fatalf("%d more messages dropped with the broker connected", d-m.Dropped)
	}
	t.Logf("disk full for %v: %d of %d dropped oldest-first with %d log line(s); after freeing, seq %d..%d delivered in order",
		elapsed.Round(time.Millisecond), m.Dropped, total, lines, first, total+300)
}

// A broker that cannot be reached is reported with the likely cause and the key to fix.
func TestConnectErrorsNameCauseAndKey(t *testing.T) {
	t.Parallel()
	plain := testenv.StartMosquitto(t, "")
	// silent accepts TCP connections and never says a word, as a broker stuck at start would.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		silent.Close()
		<-accepted
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	for _, c := range []struct {
		name    string
		brokers []string
		want    []string
	}{
		{"TLS to a plain port", []string{"mqtts://127.0.0.1:" + strconv.Itoa(plain.Port)},
			[]string{"mqtt.brokers[0]", "TLS handshake", "plain MQTT port"}},
		{"broker never answers CONNECT", []string{"mqtt://" + silent.Addr().String()},
			[]string{"mqtt.brokers[0]", "never answered CONNECT", "mqtt.connect_timeout 1s"}},
		{"nothing listening", []string{"mqtt://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))},
			[]string{"mqtt.brokers[0]", "nothing accepts connections"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := publish.DefaultConfig()
			cfg.Brokers = c.brokers
			cfg.ConnectTimeout = time.Second
			p := newPublisher(t, cfg, t.TempDir(), true)
			m := waitFailures(t, p, 1)
			for _, w := range c.want {
				if m.LastError == nil || !strings.Contains(m.LastError.Error(), w) {
					t.Fatalf("connect error %v; want it to say %q", m.LastError, w)
				}
			}
			t.Logf("%s: %v", c.name, m.LastError)
		})
	}
}

// A disk that is completely full when the publisher has nothing of its own on it: every
// message is dropped and counted, none is an error for the caller (which would log each),
// the log gets one line, and the queue reports itself degraded.
func TestDiskFullWithNothingToFree(t *testing.T) {
	t.Parallel()
	mnt := testenv.Tmpfs(t, 256<<10)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{"mqtt://127.0.0.1:1"} // never connects; not started anyway
	var logs testenv.LogBuffer
	p, err := publish.New(cfg, publish.Options{DeviceID: "dev1", StateDir: mnt, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(closeCtx(t))
	testenv.Fill(t, mnt, "filler", 0)
	for i := range 50 {
		if err := p.PublishDetections(frame("cam", uint64(i), 40)); err != nil {
			t.Fatalf("message %d on a full disk: %v", i, err)
		}
	}
	if m := p.Metrics(); m.Dropped != 50 || m.QueueDepth != 0 {
		t.Fatalf("metrics %+v: want all 50 dropped and counted", m)
	}
	if n := logs.Count("disk full"); n != 1 || !strings.Contains(p.QueueHealth(), "full") {
		t.Fatalf("%d disk-full log lines for 50 drops (want 1), health %q:\n%s", n, p.QueueHealth(), logs.String())
	}
}

// Two publishers with one client id make the broker drop each for the other, over and over.
// Each reconnects on the retry schedule, not at full speed: its first attempts take at least
// the schedule's shortest waits (jitter included) however fast the broker answers.
func TestTakenOverConnectionBacksOff(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.ClientID = "twin"
	start := time.Now()
	one := newPublisher(t, cfg, t.TempDir(), true)
	two := newPublisher(t, cfg, t.TempDir(), true)
	// newPublisher's schedule is 100, 300, 500 ms, the last repeating, each ±20%.
	const attempts = 6
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%d connection attempts by each twin", attempts), func() bool {
		return one.Metrics().ConnectAttempts >= attempts && two.Metrics().ConnectAttempts >= attempts
	})
	elapsed := time.Since(start)
	// Of each twin's first attempts, at most one per loss follows a wait; the others waited
	// on the schedule: at least 80% of 100+300+500+500 ms once the schedule is walked.
	if least := 8 * (100 + 300 + 500 + 500) * time.Millisecond / 10; elapsed < least {
		t.Errorf("%d attempts each within %v: the twins reconnect in a tight loop (want at least %v between them)", attempts, elapsed, least)
	}
	t.Logf("%d attempts each took %v", attempts, elapsed)
}

// A broker that accepts the connection and the messages but never acknowledges them: a QoS 1
// message is queued, never counted (or logged) as published, and stays queued for the next
// broker, which gets it.
func TestPublishedOnlyOnAcknowledgement(t *testing.T) {
	t.Parallel()
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	publishes := make(chan struct{}, 100)
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			go muteBroker(c, publishes)
		}
	}()
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{"mqtt://" + mute.Addr().String()}
	state := t.TempDir()
	p := newPublisher(t, cfg, state, true)
	waitConnected(t, p)
	if err := p.PublishDetections(frame("front", 1, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-publishes:
	case <-time.After(20 * time.Second):
		t.Fatal("the message never reached the broker")
	}
	// The broker has it but said nothing: not published. The check waits for nothing: the
	// PUBACK that would make it published cannot come.
	if m := p.Metrics(); m.Published != 0 || m.Queued != 1 {
		t.Fatalf("after a PUBLISH without PUBACK: published %d queued %d, want 0 and 1", m.Published, m.Queued)
	}
	// Close waits for the acknowledgement until its deadline, then keeps the message queued.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}

	// The next start, on a broker that acknowledges, delivers it.
	b := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/front/detections", nil)
	cfg.Brokers = []string{b.URL("mqtt")}
	p2 := newPublisher(t, cfg, state, true)
	testenv.WaitFor(t, 20*time.Second, "the unacknowledged message delivered by the next broker", func() bool {
		return p2.Metrics().Published >= 1 && len(seqs(t, sub.Messages(), "front")) >= 1
	})
}

// muteBroker answers CONNECT with CONNACK and PINGREQ with PINGRESP, reads everything else and
// reports each PUBLISH, acknowledging nothing.
func muteBroker(c net.Conn, publishes chan<- struct{}) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		head, err := r.ReadByte()
		if err != nil {
			return
		}
		n, mul := 0, 1
		for {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			n += int(b&0x7f) * mul
			mul *= 128
			if b&0x80 == 0 {
				break
			}
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return
		}
		switch head >> 4 {
		case 1: // CONNECT
			_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x00})
		case 3: // PUBLISH
			select {
			case publishes <- struct{}{}:
			default:
			}
		case 12: // PINGREQ
			_, _ = c.Write([]byte{0xd0, 0x00})
		}
	}
}
