package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// startupEnv is one daemon configuration in a temporary folder, with its state folder.
type startupEnv struct {
	bin, dir, cfg, state string
	broker               *testenv.Mosquitto
	httpPort             int
}

func newStartupEnv(t *testing.T, bin string, broker *testenv.Mosquitto, httpPort int) startupEnv {
	t.Helper()
	dir := t.TempDir()
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	e := startupEnv{bin: bin, dir: dir, cfg: filepath.Join(dir, "config.yaml"), state: filepath.Join(dir, "state"), broker: broker, httpPort: httpPort}
	body := fmt.Sprintf(e2eConfig, dir, testenv.Model(t, "tiny.onnx"), clip, "", broker.URL("mqtt"), httpPort)
	if err := os.WriteFile(e.cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.state, 0o750); err != nil {
		t.Fatal(err)
	}
	return e
}

// runToExit runs a stardetr command that must end by itself, and returns its exit code and output.
func (e startupEnv) runToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return e.runToExitEnv(t, nil, args...)
}

// runToExitEnv is runToExit with extra environment variables.
func (e startupEnv) runToExitEnv(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(e.bin, append(args, "--config", e.cfg)...)
	cmd.Env = append(os.Environ(), env...)
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	close(done)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine ") {
		t.Fatalf("stardetr %v panicked:\n%s", args, out)
	}
	return code, string(out)
}

// A start-up failure after the model has loaded is one error naming the thing and the fix,
// exit 1 (systemd restarts: the condition may clear), never a panic; `check` names it too.
func TestStartupFailuresAreClear(t *testing.T) {
	bin := buildStardetr(t)
	broker := testenv.NewMosquitto(t, "") // never started: these daemons stop before connecting

	t.Run("file in place of the queue folder", func(t *testing.T) {
		e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
		queue := filepath.Join(e.state, "mqtt-queue")
		if err := os.WriteFile(queue, []byte("not a folder"), 0o640); err != nil {
			t.Fatal(err)
		}
		code, out := e.runToExit(t, "run")
		if code != 1 || !strings.Contains(out, queue) || !strings.Contains(out, "move it away") {
			t.Fatalf("run with a file as queue folder: exit %d, want 1 naming %s and the fix:\n%s", code, queue, out)
		}
		code, out = e.runToExit(t, "check")
		if code != 1 || !strings.Contains(out, queue) {
			t.Fatalf("check with a file as queue folder: exit %d, want 1 naming %s:\n%s", code, queue, out)
		}
	})

	t.Run("file in place of the state folder", func(t *testing.T) {
		e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
		if err := os.Remove(e.state); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(e.state, []byte("not a folder"), 0o640); err != nil {
			t.Fatal(err)
		}
		code, out := e.runToExit(t, "run")
		if code != 1 || !strings.Contains(out, e.state) || strings.Contains(out, "panic") {
			t.Fatalf("run with a file as state folder: exit %d, want 1 naming %s:\n%s", code, e.state, out)
		}
	})

	// A full state file system at start is survived, not fatal: the daemon runs, drops what it
	// cannot queue (counted) and says so on /healthz; check reports the space.
	t.Run("full disk", func(t *testing.T) {
		e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
		full := testenv.Tmpfs(t, 1<<20)
		testenv.Fill(t, full, "filler", 0)
		if err := os.Remove(e.state); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(full, e.state); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, bin, e.cfg)
		url := fmt.Sprintf("http://127.0.0.1:%d/healthz", e.httpPort)
		var body string
		testenv.WaitFor(t, 60*time.Second, "/healthz to report the full state file system", func() bool {
			select {
			case err := <-d.exited:
				t.Fatalf("the daemon exited on a full disk: %v", err)
			default:
			}
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "the state_dir file system is full")
		})
		code, out := e.runToExit(t, "check")
		if code != 1 || !strings.Contains(out, "free") {
			t.Errorf("check on a full state file system: exit %d, want 1 reporting the free space:\n%s", code, out)
		}
		if err := d.stop(10 * time.Second); err != nil {
			t.Errorf("stopping the daemon on a full disk: %v", err)
		}
	})

	t.Run("http port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		e := newStartupEnv(t, bin, broker, port)
		want := fmt.Sprintf("http.listen 127.0.0.1:%d", port)
		code, out := e.runToExit(t, "run")
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "address already in use") {
			t.Fatalf("run with the HTTP port taken: exit %d, want 1 naming %q:\n%s", code, want, out)
		}
		// Nothing was left half-started: the state folder holds no queue or counters yet.
		if _, err := os.Stat(filepath.Join(e.state, "mqtt-queue")); !os.IsNotExist(err) {
			t.Fatalf("the queue folder was created before the port check failed: %v", err)
		}
		code, out = e.runToExit(t, "check")
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("check with the HTTP port taken: exit %d, want 1 naming %q:\n%s", code, want, out)
		}
	})
}

// A corrupt counters file is moved aside and numbering continues above anything used before;
// while that daemon runs, a second one on the same state folder exits at once naming it.
func TestCorruptSeqAndSecondInstance(t *testing.T) {
	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	sub := testenv.Subscribe(t, broker.URL("mqtt"), "stardetr/e2e/+/detections", nil)
	e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
	seqPath := filepath.Join(e.state, "mqtt-seq.json")
	// The repro from the issue: a counters file cut short.
	if err := os.WriteFile(seqPath, []byte(`{"version":1,"next":{"front":123456}}`)[:10], 0o640); err != nil {
		t.Fatal(err)
	}
	code, out := e.runToExit(t, "check")
	if code != 0 || !strings.Contains(out, seqPath+": corrupt") || !strings.Contains(out, "move it aside") {
		t.Fatalf("check with corrupt counters: exit %d, want 0 and a note naming %s:\n%s", code, seqPath, out)
	}

	before := uint64(time.Now().UnixMilli())
	ns := testenv.NewNotifySocket(t)
	daemon := startDaemon(t, bin, e.cfg, "NOTIFY_SOCKET="+ns.Path)
	first, stderr := daemon.cmd, daemon.log
	ns.Expect(t, "READY=1", 60*time.Second)
	if log := stderr.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "message counters were corrupt") {
		t.Fatalf("no WARN about the corrupt counters:\n%s", log)
	}
	moved, _ := filepath.Glob(seqPath + ".corrupt-*")
	if len(moved) != 1 {
		t.Fatalf("corrupt counters moved to %q, want one %s.corrupt-<time>", moved, seqPath)
	}
	msgs := sub.WaitFor(t, 30*time.Second, "a detection message", func(ms []testenv.Received) bool { return len(ms) > 0 })
	var d struct{ Seq uint64 }
	if err := json.Unmarshal(msgs[0].Payload, &d); err != nil {
		t.Fatal(err)
	}
	if d.Seq < before || d.Seq < 123456 {
		t.Fatalf("first seq after the corrupt counters is %d: want >= %d (the clock in ms at start)", d.Seq, before)
	}

	// A second instance on the same folder: exit 1 naming the folder and the first's pid,
	// before loading anything (it would otherwise log the model load).
	code, out = e.runToExit(t, "run")
	want := fmt.Sprintf("state folder %s is in use by process %d", e.state, first.Process.Pid)
	if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "model loaded") {
		t.Fatalf("second instance: exit %d, want 1 with %q and nothing loaded:\n%s", code, want, out)
	}
	code, out = e.runToExit(t, "check")
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("check while the daemon runs: exit %d, want 1 with %q:\n%s", code, want, out)
	}
	// systemd's ExecReload runs check with MAINPID set: the running service's own lock and
	// port are not problems then.
	code, out = e.runToExitEnv(t, []string{"MAINPID=" + strconv.Itoa(first.Process.Pid)}, "check")
	if code != 0 || !strings.Contains(out, "locked by the running service") {
		t.Fatalf("check before a reload (MAINPID set): exit %d, want 0:\n%s", code, out)
	}
	// The first instance kept its numbering: no second writer.
	n := len(sub.Messages())
	msgs = sub.WaitFor(t, 30*time.Second, "more detections from the first instance", func(ms []testenv.Received) bool { return len(ms) > n+2 })
	prev := uint64(0)
	for _, m := range msgs {
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatal(err)
		}
		if prev != 0 && d.Seq != prev+1 {
			t.Fatalf("seq %d after %d", d.Seq, prev)
		}
		prev = d.Seq
	}

	if err := daemon.stop(10 * time.Second); err != nil {
		t.Fatalf("first instance exit: %v", err)
	}
	// After a clean stop the lock is free and the counters are valid again.
	b, err := os.ReadFile(seqPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Next  map[string]uint64
		Floor uint64
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Next["front"] != prev+1 || f.Floor < before {
		t.Fatalf("counters after stop: %s (%v); want front %d and floor >= %d", b, err, prev+1, before)
	}
}
