package daemon_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// procFDs counts the open file descriptors of process pid.
func procFDs(t testing.TB, pid int) int {
	t.Helper()
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

// peerClosed says whether err means the other side closed or reset the connection.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// idleClient connects to addr, asks for /healthz and keeps the connection open without a
// further request, as a client that forgets its connections does. It returns the open
// connection, or nil when the daemon closed it instead of answering; anything else (a
// timeout included) is an error.
func idleClient(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if peerClosed(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: stardetr\r\n\r\n"); err != nil {
		c.Close()
		if peerClosed(err) {
			return nil, nil
		}
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		if peerClosed(err) {
			return nil, nil
		}
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Issue 23, finding 4: connections that idle after a request took one file descriptor each
// for ever, until the daemon had none left. Against the real daemon with its default
// http.max_connections (64): of 400 such clients 64 are served and kept, the rest closed at
// once and counted, and the daemon's descriptors grow by the 64 only.
func TestDaemonHTTPConnectionsBounded(t *testing.T) {
	const maxConns, clients = 64, 400
	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
	ns := testenv.NewNotifySocket(t)
	d := startDaemon(t, bin, e.cfg, "NOTIFY_SOCKET="+ns.Path)
	ns.Expect(t, "READY=1", 60*time.Second)
	pid := d.cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", e.httpPort)
	// No request before the clients below: each would leave a kept-alive connection.
	base := procFDs(t, pid)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range clients {
		c, err := idleClient(addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if c != nil {
			held = append(held, c)
		}
	}
	// The daemon opens and closes files of its own meanwhile (the clip, the queue): a margin.
	const margin = 16
	fds := procFDs(t, pid)
	t.Logf("%d clients: %d served and idle, daemon descriptors %d → %d", clients, len(held), base, fds)
	if len(held) != maxConns {
		t.Errorf("%d of %d idle clients kept their connection; want http.max_connections' default %d", len(held), clients, maxConns)
	}
	if fds > base+maxConns+margin {
		t.Errorf("the daemon's descriptors grew from %d to %d with %d idle clients; want at most %d more", base, fds, clients, maxConns+margin)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	var m []byte
	// Until the daemon has seen the closes, its 64 slots are full and it refuses (resets) the
	// scrape's connection too: that is a "not yet", counted among the refused.
	refusedScrapes := 0
	testenv.WaitFor(t, 10*time.Second, "the idle connections closed in the daemon", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://%s/metrics", addr))
		if err != nil {
			refusedScrapes++
			return false
		}
		defer resp.Body.Close()
		if m, err = io.ReadAll(resp.Body); err != nil {
			return false
		}
		return metric(t, m, "stardetr_http_connections_open") == 1
	})
	if got := metric(t, m, "stardetr_http_connections_refused_total"); got != float64(clients-maxConns+refusedScrapes) {
		t.Errorf("stardetr_http_connections_refused_total %v, want %d (%d idle clients, %d scrapes refused)", got, clients-maxConns+refusedScrapes, clients-maxConns, refusedScrapes)
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// procRSS is process pid's resident set in bytes.
func procRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}

const idleConfig = `
device_id: idle
state_dir: %[1]s/state
model: {path: %[2]s, threads: 1}
cameras:
  - name: front
    url: %[3]s
    pace: fast
    publish: {policy: every, interval: 0s}
mqtt:
  brokers: [%[4]s]
  queue: {max_mb: 1}
http:
  listen: 127.0.0.1:%[5]d
`

// idleChild marks a process that BenchmarkIdleConnections runs to hold clients: one process
// cannot hold 20,000 connections under a hard descriptor limit of 20,000.
const idleChild = "STARDETR_BENCH_IDLE_CLIENTS"

// BenchmarkIdleConnections is issue 23's attack as a bounded loopback program: while the
// daemon publishes every frame of the test clip read as fast as it goes (so that its MQTT
// queue needs new segment files and its counters their next block), 20,000 clients (in two
// processes of this binary) each make one request and keep their connection open for 20 s.
// It prints the daemon's descriptors and resident set before and at their peak, and the
// detection messages lost (frames processed but never handed on, and gaps in seq) against
// those counted in stardetr_mqtt_dropped_total.
func BenchmarkIdleConnections(b *testing.B) {
	if addr := os.Getenv(idleChild); addr != "" {
		holdIdleClients(b, addr)
		return
	}
	const clients, procs, hold = 20000, 2, 20 * time.Second
	bin := buildStardetr(b)
	broker := testenv.StartMosquitto(b, "")
	sub := testenv.Subscribe(b, broker.URL("mqtt"), "stardetr/idle/front/detections", nil)
	dir := b.TempDir()
	port := testenv.FreePort(b)
	clip := filepath.Join(testenv.RepoRoot(b), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(idleConfig, dir, testenv.Model(b, "tiny.onnx"), clip, broker.URL("mqtt"), port)), 0o644); err != nil {
		b.Fatal(err)
	}
	ns := testenv.NewNotifySocket(b)
	d := startDaemon(b, bin, cfg, "NOTIFY_SOCKET="+ns.Path)
	ns.Expect(b, "READY=1", 60*time.Second)
	pid := d.cmd.Process.Pid
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		b.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sub.WaitFor(b, 30*time.Second, "the first detection messages", func(ms []testenv.Received) bool { return len(ms) > 10 })
	fd0, rss0 := procFDs(b, pid), procRSS(b, pid)

	for b.Loop() {
		t0 := time.Now()
		var kids []*exec.Cmd
		var stdins []io.Closer
		var outs []*bufio.Reader
		for range procs {
			c := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkIdleConnections$", "-test.benchtime=1x")
			c.Env = append(os.Environ(), idleChild+"="+addr, fmt.Sprintf("STARDETR_BENCH_IDLE_N=%d", clients/procs))
			in, err := c.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			out, err := c.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			c.Stderr = os.Stderr
			if err := c.Start(); err != nil {
				b.Fatal(err)
			}
			kids, stdins, outs = append(kids, c), append(stdins, in), append(outs, bufio.NewReader(out))
		}
		fdPeak, rssPeak := fd0, rss0
		sample := func() { fdPeak, rssPeak = max(fdPeak, procFDs(b, pid)), max(rssPeak, procRSS(b, pid)) }
		var served, refused, unanswered int
		for i, out := range outs {
			// Each child prints one line once its clients are connected.
			line, err := out.ReadString('\n')
			var s, r, u int
			if _, serr := fmt.Sscanf(line, "idle clients: %d served %d refused %d unanswered", &s, &r, &u); err != nil || serr != nil {
				b.Fatalf("client process %d: %q (%v, %v)", i, line, err, serr)
			}
			served, refused, unanswered = served+s, refused+r, unanswered+u
			sample()
		}
		opened := time.Since(t0)
		tick := time.NewTicker(250 * time.Millisecond) // the sampling pace while the clients hold on
		for end := time.Now().Add(hold); time.Now().Before(end); <-tick.C {
			sample()
		}
		tick.Stop()
		for i, in := range stdins {
			in.Close()
			if err := kids[i].Wait(); err != nil {
				b.Errorf("client process %d: %v", i, err)
			}
		}
		b.Logf("%d clients (in %d processes) in %v: %d served and kept, %d closed at once, %d never answered; daemon (RLIMIT_NOFILE %d) descriptors %d -> peak %d, resident %.0f -> peak %.0f MB while they held on for %v",
			clients, procs, opened.Round(time.Millisecond), served, refused, unanswered, nofile.Cur, fd0, fdPeak, float64(rss0)/(1<<20), float64(rssPeak)/(1<<20), hold)
		b.ReportMetric(float64(fd0), "fds-before")
		b.ReportMetric(float64(fdPeak), "fds-peak")
		b.ReportMetric(float64(rss0)/(1<<20), "rss-before-MB")
		b.ReportMetric(float64(rssPeak)/(1<<20), "rss-peak-MB")
	}

	// Every frame processed was to be published: what did not arrive and what was counted.
	var m []byte
	testenv.WaitFor(b, 60*time.Second, "the daemon's queue delivered", func() bool {
		code, body := getURL(b, fmt.Sprintf("http://%s/metrics", addr))
		m = body
		return code == 200 && metricT(body, "stardetr_mqtt_queue_messages") == 0
	})
	processed := metricT(m, `stardetr_frames_processed_total{camera="front"}`)
	handed := metricT(m, `stardetr_messages_handed_total{camera="front"}`)
	dropped := sumMetric(m, "stardetr_mqtt_dropped_total")
	seen := map[uint64]bool{}
	var top uint64
	for _, msg := range sub.Messages() {
		var d struct{ Seq uint64 }
		if err := json.Unmarshal(msg.Payload, &d); err == nil {
			seen[d.Seq], top = true, max(top, d.Seq)
		}
	}
	gaps := int(top) - len(seen)
	_, health := getURL(b, fmt.Sprintf("http://%s/healthz", addr))
	b.Logf("frames processed %.0f, detection messages handed to the publisher %.0f, delivered %d (seq 1..%d: %d gaps); stardetr_mqtt_dropped_total %.0f; /healthz after: %s",
		processed, handed, len(seen), top, gaps, dropped, strings.TrimSpace(string(health)))
	b.ReportMetric(processed-handed+float64(gaps), "msgs-lost")
	b.ReportMetric(dropped, "msgs-dropped-counted")
	if strings.Contains(d.log.String(), "panic") {
		b.Fatalf("the daemon panicked:\n%s", d.log.String())
	}
}

// holdIdleClients is a client process of BenchmarkIdleConnections: it connects
// $STARDETR_BENCH_IDLE_N idle clients to addr, prints how many were served, closed at once and
// never answered, and holds them until its stdin closes.
func holdIdleClients(b *testing.B, addr string) {
	n, err := strconv.Atoi(os.Getenv("STARDETR_BENCH_IDLE_N"))
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu                          sync.Mutex
		held                        []net.Conn
		served, refused, unanswered int
		wg                          sync.WaitGroup
	)
	next := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := idleClient(addr)
				mu.Lock()
				switch {
				case c != nil:
					held, served = append(held, c), served+1
				case err == nil:
					refused++
				default:
					unanswered++ // e.g. the daemon had no descriptor left to accept it
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	fmt.Printf("idle clients: %d served %d refused %d unanswered\n", served, refused, unanswered)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
}

// metricT is the value of an exact series of a /metrics body, -1 when absent.
func metricT(body []byte, series string) float64 {
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// sumMetric adds up every series of a metric (labelled or not).
func sumMetric(body []byte, name string) float64 {
	sum := 0.0
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}
