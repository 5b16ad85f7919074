package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// lockedBuffer collects the daemon's log while the test reads it.
type lockedBuffer = testenv.LogBuffer

// daemonProcess is a `stardetr run` that a test started: its log, and its exit once it comes.
type daemonProcess struct {
	cmd    *exec.Cmd
	log    *lockedBuffer // nil when the log goes to a file (startDaemonLogTo)
	exited chan error
}

// startDaemon runs `bin run --config cfg` with env added to the test's environment, its log
// kept in memory. The test's cleanup kills it and, when the test failed, prints its log.
func startDaemon(t testing.TB, bin, cfg string, env ...string) *daemonProcess {
	t.Helper()
	log := &lockedBuffer{}
	d := startDaemonLogTo(t, bin, cfg, log, env...)
	d.log = log
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", cfg, log.String())
		}
	})
	return d
}

// startDaemonLogTo is startDaemon with the daemon's log written to logTo (a file, for a run
// too long to keep its log in memory). The test's cleanup kills it.
func startDaemonLogTo(t testing.TB, bin, cfg string, logTo io.Writer, env ...string) *daemonProcess {
	t.Helper()
	d := &daemonProcess{cmd: exec.Command(bin, "run", "--config", cfg), exited: make(chan error, 1)}
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr = logTo
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	return d
}

// stop sends SIGTERM and waits up to limit for the exit, then kills the daemon; it returns
// the exit's error, or one saying the daemon had to be killed.
func (d *daemonProcess) stop(limit time.Duration) error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case err := <-d.exited:
		d.exited <- err // later readers see the exit too
		return err
	case <-time.After(limit):
		_ = d.cmd.Process.Kill()
		err := <-d.exited
		d.exited <- err
		return fmt.Errorf("still running %v after SIGTERM: killed (%v)", limit, err)
	}
}

// buildStardetr compiles the command once per test binary run.
func buildStardetr(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stardetr")
	cmd := exec.Command("go", "build", "-tags", "gocv_specific_modules,gocv_videoio", "-o", bin, "./cmd/stardetr")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const e2eConfig = `
device_id: e2e
state_dir: %[1]s/state
model:
  path: %[2]s
  threads: 1
  conf: 0.0
  max_det: 3
cameras:
  - name: front
    url: %[3]s
    publish: {policy: every, interval: 0s}
%[4]s
mqtt:
  brokers: [%[5]s]
  stats_interval: 1s
http:
  listen: 127.0.0.1:%[6]d
watchdog:
  retry_budget: 2s
`

const ghostCamera = `  - name: ghost
    url: http://127.0.0.1:%d/never.mjpg
    open_timeout: 1s
`

func getURL(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func metric(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s missing from /metrics", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// The daemon as systemd runs it: READY after the model and cameras start, watchdog pings,
// detections on MQTT, health with a camera that never opens, a SIGHUP that restarts only the
// changed cameras, and a SIGTERM that exits 0 with "stopped" retained.
func TestServiceEndToEnd(t *testing.T) {
	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, broker.URL("mqtt"), "stardetr/e2e/#", nil)
	ns := testenv.NewNotifySocket(t)
	dir := t.TempDir()
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	httpPort := testenv.FreePort(t)
	write := func(extra string) string {
		p := filepath.Join(dir, "config.yaml")
		body := fmt.Sprintf(e2eConfig, dir, testenv.Model(t, "tiny.onnx"), clip, extra, broker.URL("mqtt"), httpPort)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write(fmt.Sprintf(ghostCamera, testenv.FreePort(t)))

	d := startDaemon(t, bin, cfg, "NOTIFY_SOCKET="+ns.Path, "WATCHDOG_USEC=600000")
	cmd, exited, stderr := d.cmd, d.exited, d.log

	before := ns.Expect(t, "READY=1", 60*time.Second)
	for _, m := range before {
		if m == "WATCHDOG=1" {
			t.Fatalf("watchdog ping before READY: %q", before)
		}
	}
	ns.Expect(t, "WATCHDOG=1", 5*time.Second)
	ns.Expect(t, "STATUS=", 10*time.Second)

	msgs := sub.WaitFor(t, 30*time.Second, "online status and 3 detection messages", func(ms []testenv.Received) bool {
		online, n := false, 0
		for _, m := range ms {
			online = online || (m.Topic == "stardetr/e2e/status" && string(m.Payload) == "online")
			if m.Topic == "stardetr/e2e/front/detections" {
				n++
			}
		}
		return online && n >= 3
	})
	seq := uint64(0)
	for _, m := range msgs {
		if m.Topic != "stardetr/e2e/front/detections" {
			continue
		}
		var d struct {
			V          int    `json:"v"`
			Device     string `json:"device"`
			Camera     string `json:"camera"`
			Seq        uint64 `json:"seq"`
			Width      int    `json:"width"`
			Detections []struct {
				Label string     `json:"label"`
				Box   [4]float64 `json:"box"`
			} `json:"detections"`
		}
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatalf("detection message is not JSON: %v: %s", err, m.Payload)
		}
		if d.V != 1 || d.Device != "e2e" || d.Camera != "front" || d.Width != 320 || len(d.Detections) != 3 {
			t.Fatalf("unexpected message %s", m.Payload)
		}
		if d.Seq != seq+1 {
			t.Fatalf("seq %d after %d: messages lost or reordered", d.Seq, seq)
		}
		seq = d.Seq
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	// The ghost camera's retry budget runs out: /healthz turns 503 naming it.
	var code int
	var body []byte
	testenv.WaitFor(t, 20*time.Second, "/healthz to report the ghost camera", func() bool {
		code, body = getURL(t, base+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"name":"ghost","ok":false`) ||
		!strings.Contains(string(body), `"name":"front","ok":true`) {
		t.Fatalf("/healthz with a camera that never opens: %d %s", code, body)
	}
	code, jpg := getURL(t, base+"/snapshot/front.jpg")
	if code != 200 || !bytes.HasPrefix(jpg, []byte{0xff, 0xd8}) {
		t.Fatalf("/snapshot/front.jpg: %d, %d bytes", code, len(jpg))
	}
	if code, _ := getURL(t, base+"/snapshot/nope.jpg"); code != http.StatusNotFound {
		t.Fatalf("/snapshot/nope.jpg: %d, want 404", code)
	}
	_, m1 := getURL(t, base+"/metrics")
	front1 := metric(t, m1, `stardetr_frames_processed_total{camera="front"}`)

	// Reload: ghost removed, front unchanged, a second camera added.
	write(`  - name: second
    url: ` + clip + `
    publish: {policy: every, interval: 0s}
`)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ns.Expect(t, "RELOADING=1", 10*time.Second)
	ns.Expect(t, "READY=1", 10*time.Second)
	sub.WaitFor(t, 30*time.Second, "messages from the added camera", func(ms []testenv.Received) bool {
		for _, m := range ms {
			if m.Topic == "stardetr/e2e/second/detections" {
				return true
			}
		}
		return false
	})
	code, body = getURL(t, base+"/healthz")
	if code != 200 || strings.Contains(string(body), "ghost") {
		t.Fatalf("/healthz after removing the ghost camera: %d %s", code, body)
	}
	_, m2 := getURL(t, base+"/metrics")
	if front2 := metric(t, m2, `stardetr_frames_processed_total{camera="front"}`); front2 < front1 {
		t.Fatalf("front's frame counter went from %v to %v: the unchanged camera was restarted", front1, front2)
	}
	stopped := regexp.MustCompile(`msg="camera stopped".* camera=(\w+)`).FindAllStringSubmatch(stderr.String(), -1)
	if len(stopped) != 1 || stopped[0][1] != "ghost" {
		t.Fatalf("reload stopped cameras %q; want only the removed ghost", stopped)
	}

	// SIGTERM: STOPPING, exit 0 within 5 s, "stopped" retained.
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ns.Expect(t, "STOPPING=1", 5*time.Second)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5*time.Second - time.Since(t0)):
		t.Fatal("still running 5 s after SIGTERM")
	}
	late := testenv.Subscribe(t, broker.URL("mqtt"), "stardetr/e2e/status", nil)
	late.WaitFor(t, 5*time.Second, `retained "stopped"`, func(ms []testenv.Received) bool {
		return len(ms) > 0 && ms[len(ms)-1].Retained && string(ms[len(ms)-1].Payload) == "stopped"
	})
}

// A config that cannot run fails at once with every problem named, and starts nothing.
func TestRunRefusesBadConfig(t *testing.T) {
	bin := buildStardetr(t)
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("model:\n  path: /nonexistent.onnx\n  treads: 2\ncameras: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "run", "--config", p).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "treads") {
		t.Fatalf("unknown key: exit %v, output %s", err, out)
	}
	if err := os.WriteFile(p, []byte("model:\n  path: /nonexistent.onnx\ncameras: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "check", "--config", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cameras: none configured") || !strings.Contains(string(out), "nonexistent.onnx") {
		t.Fatalf("check of a config without cameras and model: %v\n%s", err, out)
	}
}
