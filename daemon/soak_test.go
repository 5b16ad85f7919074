//go:build soak

package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// The soak run (`make soak`, not part of `make test`): the daemon with 4 MJPEG cameras and
// the tiny model for SOAK_DURATION (default 1h), the broker stopped for 30 s every 5 minutes,
// one camera's server stopped for 30 s every 7 minutes (in turn), and a persistent QoS 1
// subscriber checking every camera's seq. It reports the daemon's RSS growth after warm-up,
// goroutines, open fds, and messages lost and duplicated; it fails on a lost message or an
// RSS growth above SOAK_MAX_RSS_GROWTH percent (default 5).
func TestSoak(t *testing.T) {
	duration := envDuration(t, "SOAK_DURATION", time.Hour)
	maxGrowth := 5.0
	if v := os.Getenv("SOAK_MAX_RSS_GROWTH"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("SOAK_MAX_RSS_GROWTH=%q: %v", v, err)
		}
		maxGrowth = f
	}
	warmup := max(duration/5, time.Minute)
	const brokerEvery, camEvery, outage = 5 * time.Minute, 7 * time.Minute, 30 * time.Second

	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, broker.URL("mqtt"), "stardetr/soak/+/detections", nil)
	dir := t.TempDir()
	cams := make([]*soakCamera, 4)
	var camYAML strings.Builder
	for i := range cams {
		cams[i] = newSoakCamera(t, i)
		fmt.Fprintf(&camYAML, "  - name: cam%d\n    url: %s\n    publish: {policy: every, interval: 0s}\n", i, cams[i].url())
	}
	httpPort := testenv.FreePort(t)
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf(`device_id: soak
state_dir: %s/state
model:
  path: %s
  threads: 1
  conf: 0.0
  max_det: 3
cameras:
%smqtt:
  brokers: [%s]
  stats_interval: 10s
http:
  listen: 127.0.0.1:%d
`, dir, testenv.Model(t, "tiny.onnx"), camYAML.String(), broker.URL("mqtt"), httpPort)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d := startDaemonLogTo(t, bin, cfg, logf)
	sub.WaitFor(t, 60*time.Second, "messages from every camera", func(ms []testenv.Received) bool {
		seen := map[string]bool{}
		for _, m := range ms {
			seen[m.Topic] = true
		}
		return len(seen) == len(cams)
	})

	start := time.Now()
	t.Logf("soak: %v (warm-up %v), broker down %v every %v, one camera down %v every %v", duration, warmup, outage, brokerEvery, outage, camEvery)
	var samples []soakSample
	sample := time.NewTicker(10 * time.Second)
	defer sample.Stop()
	nextBroker, nextCam, camTurn := start.Add(brokerEvery), start.Add(camEvery), 0
	var brokerBack, camBack time.Time
	var downCam *soakCamera
	for time.Since(start) < duration {
		select {
		case err := <-d.exited:
			t.Fatalf("daemon exited during the soak: %v; log in %s", err, logf.Name())
		case now := <-sample.C:
			samples = append(samples, takeSample(t, d.cmd.Process.Pid, httpPort, now.Sub(start)))
			if !brokerBack.IsZero() && now.After(brokerBack) {
				broker.Start()
				brokerBack = time.Time{}
			}
			if downCam != nil && now.After(camBack) {
				downCam.start(t)
				downCam = nil
			}
			// No outage starts in the last minute: the end needs the broker and cameras back.
			quiet := now.Sub(start) > duration-time.Minute
			if now.After(nextBroker) && brokerBack.IsZero() && !quiet {
				broker.Stop()
				brokerBack, nextBroker = now.Add(outage), nextBroker.Add(brokerEvery)
			}
			if now.After(nextCam) && downCam == nil && !quiet {
				downCam = cams[camTurn%len(cams)]
				camTurn++
				downCam.stop()
				camBack, nextCam = now.Add(outage), nextCam.Add(camEvery)
			}
		}
	}
	if !brokerBack.IsZero() {
		broker.Start()
	}
	if downCam != nil {
		downCam.start(t)
	}
	// Stop once the daemon is connected with an empty queue: what a stop leaves queued stays
	// on disk for the next run, which this test does not start.
	if !testenv.Poll(2*time.Minute, time.Second, func() bool {
		body := soakMetrics(httpPort)
		return strings.Contains(body, "\nstardetr_mqtt_connected 1\n") && strings.Contains(body, "\nstardetr_mqtt_queue_messages 0\n")
	}) {
		t.Errorf("the daemon's queue did not drain in 2 minutes after the last outage")
	}
	if err := d.stop(30 * time.Second); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}

	// Every number the daemon handed out (the counters it persisted at exit) must arrive.
	b, err := os.ReadFile(filepath.Join(dir, "state", "mqtt-seq.json"))
	if err != nil {
		t.Fatal(err)
	}
	var counters struct{ Next map[string]uint64 }
	if err := json.Unmarshal(b, &counters); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the subscriber to have every number; report whatever is missing.
	all := func(ms []testenv.Received) bool {
		got := soakSeqs(t, ms)
		for cam, next := range counters.Next {
			if got[cam] == nil || uint64(len(got[cam].uniq)) < next-1 {
				return false
			}
		}
		return true
	}
	testenv.Poll(2*time.Minute, time.Second, func() bool { return all(sub.Messages()) })
	got := soakSeqs(t, sub.Messages())
	var lost, dups, total uint64
	for cam, next := range counters.Next {
		s := got[cam]
		if s == nil {
			s = &seqSet{uniq: map[uint64]bool{}}
		}
		total += next - 1
		for n := uint64(1); n < next; n++ {
			if !s.uniq[n] {
				lost++
			}
		}
		dups += s.dups
	}
	report := soakReport(samples, warmup)
	t.Logf("soak result over %v: %d messages numbered, %d lost, %d duplicated; %s", duration, total, lost, dups, report.text)
	if out := os.Getenv("SOAK_REPORT"); out != "" {
		_ = os.WriteFile(out, []byte(fmt.Sprintf("duration %v\nmessages %d\nlost %d\nduplicated %d\n%s\n", duration, total, lost, dups, report.text)), 0o644)
	}
	if lost > 0 {
		t.Errorf("%d messages lost", lost)
	}
	if report.growth > maxGrowth {
		t.Errorf("RSS grew %.1f%% after warm-up, limit %.1f%% (SOAK_MAX_RSS_GROWTH)", report.growth, maxGrowth)
	}
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a duration such as 10m", name, v)
	}
	return d
}

type seqSet struct {
	uniq map[uint64]bool
	dups uint64
}

func soakSeqs(t *testing.T, ms []testenv.Received) map[string]*seqSet {
	out := map[string]*seqSet{}
	for _, m := range ms {
		var d struct {
			Camera string
			Seq    uint64
		}
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatalf("message on %s: %v", m.Topic, err)
		}
		s := out[d.Camera]
		if s == nil {
			s = &seqSet{uniq: map[uint64]bool{}}
			out[d.Camera] = s
		}
		if s.uniq[d.Seq] {
			s.dups++
		}
		s.uniq[d.Seq] = true
	}
	return out
}

type soakSample struct {
	at         time.Duration
	rss        int64
	fds        int
	goroutines int
}

func takeSample(t *testing.T, pid, httpPort int, at time.Duration) soakSample {
	s := soakSample{at: at}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				s.rss = kb << 10
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(fds)
	}
	if b := soakMetrics(httpPort); b != "" {
		for _, l := range strings.Split(b, "\n") {
			if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
				s.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	return s
}

// soakMetrics returns the daemon's /metrics text, "" when it does not answer.
func soakMetrics(httpPort int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type soakSummary struct {
	text   string
	growth float64
}

// soakReport compares the median RSS of the minute after warm-up with that of the last
// minute, so that one sample taken during a burst does not decide.
func soakReport(samples []soakSample, warmup time.Duration) soakSummary {
	var after []soakSample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
		}
	}
	if len(after) < 2 {
		return soakSummary{text: fmt.Sprintf("too short for an RSS trend (%d samples after warm-up)", len(after))}
	}
	n := min(6, len(after)/2)
	first, last := medianRSS(after[:n]), medianRSS(after[len(after)-n:])
	growth := 100 * float64(last-first) / float64(first)
	maxG, maxFD := 0, 0
	for _, s := range after {
		maxG, maxFD = max(maxG, s.goroutines), max(maxFD, s.fds)
	}
	a, z := after[0], after[len(after)-1]
	return soakSummary{growth: growth, text: fmt.Sprintf(
		"RSS after warm-up %.1f MiB -> %.1f MiB at the end (%+.1f%%); goroutines %d -> %d (max %d); fds %d -> %d (max %d)",
		float64(first)/(1<<20), float64(last)/(1<<20), growth, a.goroutines, z.goroutines, maxG, a.fds, z.fds, maxFD)}
}

func medianRSS(s []soakSample) int64 {
	v := make([]int64, len(s))
	for i := range s {
		v[i] = s[i].rss
	}
	for i := range v { // insertion sort: a handful of values
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v[len(v)/2]
}

// soakCamera is one MJPEG-over-HTTP camera at 5 fps that can be stopped and started again
// on the same port, as a camera that reboots.
type soakCamera struct {
	addr   string
	frames [][]byte
	mu     sync.Mutex
	srv    *http.Server
	done   chan struct{}
}

func newSoakCamera(t *testing.T, i int) *soakCamera {
	c := &soakCamera{}
	for k := range 5 {
		img := image.NewRGBA(image.Rect(0, 0, 320, 240))
		for y := range 240 {
			for x := range 320 {
				img.Set(x, y, color.RGBA{uint8(40 * i), uint8((x + 8*k) % 256), uint8(y), 255})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, nil); err != nil {
			t.Fatal(err)
		}
		c.frames = append(c.frames, buf.Bytes())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.serve(ln)
	t.Cleanup(c.stop)
	return c
}

func (c *soakCamera) url() string { return "http://" + c.addr + "/video.mjpg" }

func (c *soakCamera) serve(ln net.Listener) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			jpg := c.frames[i%len(c.frames)]
			if _, err := fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(jpg), jpg); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})}
	c.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(c.srv, c.done)
}

func (c *soakCamera) stop() {
	c.mu.Lock()
	srv, done := c.srv, c.done
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

func (c *soakCamera) start(t *testing.T) {
	var ln net.Listener
	var err error
	// The port may linger for a moment after Close.
	if !testenv.Poll(5*time.Second, 50*time.Millisecond, func() bool {
		ln, err = net.Listen("tcp", c.addr)
		return err == nil
	}) {
		t.Errorf("camera %s restart: %v", c.addr, err)
		return
	}
	c.serve(ln)
}
