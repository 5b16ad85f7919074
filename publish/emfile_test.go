package publish_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// emfileChild marks the process that TestQueueWriteFailuresCounted runs its scenario in.
const emfileChild = "STARDETR_TEST_EMFILE_CHILD"

// Issue 23, finding 4: with the process out of file descriptors (20,000 idle HTTP connections
// had taken them) the queue could not start its next segment nor the counters persist their
// next block, and 134 messages were lost with one log line: stardetr_mqtt_dropped_total stayed
// 0 and /healthz ok. Here a real publisher and mosquitto run out of descriptors for real
// (RLIMIT_NOFILE lowered, the rest taken): every message that is not delivered is counted by
// reason, the queue reports itself degraded naming the error, and once descriptors are back
// publishing goes on.
func TestQueueWriteFailuresCounted(t *testing.T) {
	if os.Getenv(emfileChild) == "" {
		// The scenario takes every descriptor of its process: it runs in a process of its own,
		// this test binary again, so that no other test feels it.
		cmd := exec.Command(os.Args[0], "-test.run=^TestQueueWriteFailuresCounted$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), emfileChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestQueueWriteFailuresCounted") {
			t.Fatalf("the scenario's process failed (%v):\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "emfile_test.go") {
				t.Log(strings.TrimSpace(l))
			}
		}
		return
	}

	b := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/+/detections", nil)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	cfg.Queue.MaxMB = 1 // segments of 64 KiB: a new segment file every ~150 messages
	p := newPublisher(t, cfg, t.TempDir(), true)
	waitConnected(t, p)
	attempted, errs := 0, 0
	publishN := func(n int) {
		for range n {
			if err := p.PublishDetections(frame("cam", uint64(attempted), 3)); err != nil {
				if errs++; errs == 1 {
					t.Logf("PublishDetections: %v", err)
				}
			}
			attempted++
		}
	}
	publishN(100)

	// Out of descriptors: a low soft limit, and every descriptor up to it taken.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !strings.Contains(err.Error(), "too many open files") {
				t.Fatalf("taking descriptors: %v", err)
			}
			break
		}
		held = append(held, f)
	}
	t.Logf("took the %d descriptors left under a limit of %d", len(held), lim.Cur)
	// 1,500 messages: the queue needs new segment files and the counters their next block
	// (every 1,000 numbers), and gets no descriptor for either.
	publishN(1500)
	failing := p.Metrics()
	health := p.QueueHealth()
	for _, f := range held {
		f.Close()
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if failing.Dropped == 0 || failing.DroppedWriteError != failing.Dropped {
		t.Errorf("while the queue had no descriptor: %d messages dropped, %d of them for write_error; want some, all write errors (metrics %+v)",
			failing.Dropped, failing.DroppedWriteError, failing)
	}
	if !strings.Contains(health, "degraded") || !strings.Contains(health, "too many open files") {
		t.Errorf("queue health while writes fail: %q; want degraded, naming the error", health)
	}
	publishN(100) // descriptors are back

	// Every message that was not delivered was counted: none is lost with a log line only.
	testenv.WaitFor(t, 30*time.Second, "the queue delivered", func() bool {
		m := p.Metrics()
		return m.QueueDepth == 0 && m.Published == m.Queued
	})
	m := p.Metrics()
	sub.WaitFor(t, 30*time.Second, "every acknowledged message at the subscriber", func(ms []testenv.Received) bool {
		u, _ := firstArrivals(seqs(t, ms, "cam"))
		return uint64(len(u)) >= m.Published
	})
	if m.Published+m.Dropped != uint64(attempted) {
		t.Errorf("%d messages published: %d delivered + %d counted as dropped = %d; %d lost uncounted",
			attempted, m.Published, m.Dropped, m.Published+m.Dropped, attempted-int(m.Published+m.Dropped))
	}
	if got := labelledValue(t, p, "stardetr_mqtt_dropped_total", "reason", "write_error"); got != float64(m.DroppedWriteError) {
		t.Errorf(`stardetr_mqtt_dropped_total{reason="write_error"} = %v, want %d`, got, m.DroppedWriteError)
	}
	t.Logf("%d messages: %d delivered, %d dropped (%d while out of descriptors), %d errors returned; health then: %q",
		attempted, m.Published, m.Dropped, failing.Dropped, errs, health)
}
