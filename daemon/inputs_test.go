package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// Issue 23's hostile inputs, each through the stardetr binary as a user would run it.

// cmdResult is how one stardetr command ended.
type cmdResult struct {
	code           int
	stdout, stderr string
	peakRSSMB      float64 // the child's VmHWM, polled while it ran
	wall           time.Duration
	cpu            time.Duration // user + system time of the child
}

// commandDeadline only catches hangs: the code before the fix hung on some of these commands
// (a named pipe, a `run` that should not have started), and a hang must fail the test, not
// stall it. It is far above what any command needs on a machine loaded 12 times over (30 s
// seen); how fast a command is, where that matters, is asserted in CPU time.
const commandDeadline = 5 * time.Minute

// runStardetr runs bin with args in dir (the test's folder when empty) until it exits, killing
// it at commandDeadline, which fails the test. Its peak RSS is the kernel's high-water mark
// (VmHWM) polled every 5 ms: the rusage of a child Go started counts the test process's own
// peak too (exec after vfork keeps the parent's high-water mark).
func runStardetr(t *testing.T, dir, bin string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var hwm int64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			hwm = max(hwm, procHWM(cmd.Process.Pid))
			select {
			case <-exited:
				peak <- hwm
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(exited)
	r := cmdResult{stdout: out.String(), stderr: errb.String(), wall: time.Since(start), peakRSSMB: float64(<-peak) / 1024,
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if ctx.Err() != nil {
		t.Fatalf("stardetr %.200q did not end within %v (killed):\n%s", args, commandDeadline, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("stardetr %.200q: %v", args, err)
	}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("stardetr %.200q panicked:\n%s", args, r.stderr)
	}
	return r
}

// procHWM reads VmHWM (kB) of a child of this process; 0 once it is gone (or its pid was
// reused by another process's child after it was reaped).
func procHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	var kb, ppid int64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
		}
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &ppid)
		}
	}
	if ppid != int64(os.Getpid()) {
		return 0
	}
	return kb
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// valSet writes a YOLO dataset of n copies of model/testdata/frame.jpg (hard links), each
// with one person, and returns its folder; data.yaml says `path: .`.
func valSet(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	frame := filepath.Join(testenv.RepoRoot(t), "model", "testdata", "frame.jpg")
	img := filepath.Join(dir, "images", "val", "f0000.jpg")
	b, err := os.ReadFile(frame)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, img, b)
	for i := range n {
		name := fmt.Sprintf("f%04d", i)
		if i > 0 {
			if err := os.Link(img, filepath.Join(dir, "images", "val", name+".jpg")); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, filepath.Join(dir, "labels", "val", name+".txt"), []byte("0 0.5 0.5 0.3 0.6\n"))
	}
	writeFile(t, filepath.Join(dir, "data.yaml"), []byte("path: .\ntrain: images/val\nval: images/val\nnames:\n  0: person\n  1: car\n"))
	return dir
}

// checkConfig is a tracking camera with one zone; %[3]s are extra top-level keys, %[4]s the
// camera's file, %[5]s model keys, %[6]s the Home Assistant prefix, %[7]s zone keys.
const checkConfig = `
state_dir: %[1]s/state
%[3]s
model:
  path: %[2]s
  threads: 1
%[5]s
cameras:
  - name: front
    url: %[4]s
    track: {enabled: true}
    zones:
      - name: door
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
%[7]s
mqtt:
  brokers: [mqtt://127.0.0.1:1]
http:
  listen: ""
homeassistant: {enabled: true, prefix: "%[6]s"}
`

// TestHostileInputsThroughTheBinary runs issue 23's hostile inputs (findings 6, 7 and 9)
// through the stardetr binary, as a user would: the exit code, the one error line, the peak
// RSS and that nothing hangs are properties of the process. The in-process rules are in
// inputs_internal_test.go.
func TestHostileInputsThroughTheBinary(t *testing.T) {
	bin := buildStardetr(t)
	tiny := testenv.Model(t, "tiny.onnx")
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")

	// Finding 6: an 875 KB PNG of 30000×30000 took 2.76 GB in `infer` and `eval`. Its
	// header is read first: exit 1, one line naming the file, its size and the cap.
	t.Run("image bomb", func(t *testing.T) {
		bomb := filepath.Join(t.TempDir(), "bomb.png")
		testenv.PNGBomb(t, bomb, 30000, 30000)
		const maxRSSMB = 300 // decoded, the bomb is 2,700 MB
		want := func(what string, r cmdResult, parts ...string) {
			t.Helper()
			t.Logf("%s: exit %d in %v (CPU %v), peak RSS %.0f MB", what, r.code, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), r.peakRSSMB)
			if r.code != 1 {
				t.Errorf("%s: exit %d, want 1\n%s", what, r.code, r.stderr)
			}
			for _, p := range parts {
				if !strings.Contains(r.stderr, p) {
					t.Errorf("%s: stderr lacks %q:\n%s", what, p, r.stderr)
				}
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
				t.Errorf("%s: want one error line, got %d:\n%s", what, n+1, r.stderr)
			}
			switch {
			case r.peakRSSMB == 0:
				t.Errorf("%s: no RSS sample of the process", what)
			case r.peakRSSMB > maxRSSMB:
				t.Errorf("%s: peak RSS %.0f MB, want under %d MB: the picture was decoded", what, r.peakRSSMB, maxRSSMB)
			}
		}
		want("infer", runStardetr(t, "", bin, "infer", "--model", tiny, "--image", bomb),
			bomb, "PNG of 30000×30000 pixels is above the cap of 67108864 pixels (64 MP): scale it down, or raise --max-pixels")
		ds := valSet(t, 2)
		inSet := filepath.Join(ds, "images", "val", "f0001.png")
		if err := os.Link(bomb, inSet); err != nil {
			t.Fatal(err)
		}
		want("eval", runStardetr(t, "", bin, "eval", "--model", tiny, "--data", filepath.Join(ds, "data.yaml")),
			inSet, "PNG of 30000×30000 pixels is above the cap")
	})

	// Finding 9: a 200,000-corner zone took `check` 248 s of CPU, ignoring SIGTERM. Zones are
	// capped at 1,000 corners: one error naming the key and the cap, in about the CPU time the
	// 4 MB of YAML take to read (~2 s).
	t.Run("200,000-corner zone", func(t *testing.T) {
		dir := t.TempDir()
		var poly strings.Builder
		const n = 200000
		poly.WriteString("[")
		for i := range n {
			if i > 0 {
				poly.WriteString(", ")
			}
			a := 2 * math.Pi * float64(i) / n // a circle: only the cap refuses it
			fmt.Fprintf(&poly, "[%.6f, %.6f]", 0.5+0.4*math.Cos(a), 0.5+0.4*math.Sin(a))
		}
		poly.WriteString("]")
		cfg := filepath.Join(dir, "zone.yaml")
		writeFile(t, cfg, fmt.Appendf(nil, checkConfig, dir, tiny, "", clip, "", "homeassistant",
			"      - name: huge\n        polygon: "+poly.String()))
		r := runStardetr(t, "", bin, "check", "--config", cfg)
		t.Logf("check with a %d-corner zone (%d KB of YAML): exit %d in %v (CPU %v), peak RSS %.0f MB",
			n, poly.Len()>>10, r.code, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), r.peakRSSMB)
		if r.code != 1 || !strings.Contains(r.stderr, "has 1 problem(s)") ||
			!strings.Contains(r.stderr, "  - cameras[0].zones[1].polygon: has 200000 corners: at most 1000") {
			t.Errorf("exit %d, want 1 with one problem naming the key and the cap:\n%.2000s", r.code, r.stderr)
		}
		if r.cpu > 30*time.Second {
			t.Errorf("check took %v of CPU: the corners were compared", r.cpu)
		}
	})

	// Finding 7: topic levels from the file and from the model's metadata are checked by one
	// rule at `check` time, one error per problem naming the key; `run` refuses the same
	// before anything is published.
	t.Run("topic names", func(t *testing.T) {
		dir := t.TempDir()
		check := func(name string, cfgText []byte) cmdResult {
			t.Helper()
			path := filepath.Join(dir, name+".yaml")
			writeFile(t, path, cfgText)
			return runStardetr(t, "", bin, "check", "--config", path)
		}
		r := check("file", fmt.Appendf(nil, checkConfig, dir, tiny, "device_id: "+strings.Repeat("d", 70000), clip,
			`  names: {0: "a/b", 1: "c#"}`, "$SYS/x", ""))
		wantProblems(t, "names from the file", r, 4,
			`device_id: "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"… (70000 bytes) is 70000 bytes long: at most 256`,
			`model.names[0]: "a/b" contains '/'`,
			`model.names[1]: "c#" contains '#'`,
			`homeassistant.prefix: level "$SYS" starts with '$'`)

		// A label from the model's own metadata: named with its class, model.names suggested.
		bad := filepath.Join(dir, "slash.onnx")
		script := "import onnx, sys\nm = onnx.load(sys.argv[1])\nfor p in m.metadata_props:\n" +
			"    if p.key == 'names':\n        p.value = \"{0: 'a/b', 1: 'car'}\"\nonnx.save(m, sys.argv[2])\n"
		if out, err := exec.Command(testenv.Python(), "-c", script, tiny, bad).CombinedOutput(); err != nil {
			t.Fatalf("write a model whose label has a '/': %v\n%s", err, out)
		}
		r = check("meta", fmt.Appendf(nil, checkConfig, dir, bad, "", clip, "", "homeassistant", ""))
		wantProblems(t, "label from the model", r, 1,
			`model: the model's own label of class 0 "a/b" contains '/'`)
		if !strings.Contains(r.stderr, `override it in the config, e.g. model.names: {0: "a_b"}`) {
			t.Errorf("no model.names override suggested:\n%s", r.stderr)
		}
		r = runStardetr(t, "", bin, "run", "--config", filepath.Join(dir, "meta.yaml"))
		if r.code != 1 || !strings.Contains(r.stderr, `not started`) || !strings.Contains(r.stderr, `class 0 \"a/b\" contains '/'`) {
			t.Errorf("run with that model: exit %d, want 1 naming the label before starting:\n%s", r.code, r.stderr)
		}
	})

	// Finding 9: SIGTERM during a long eval ends it promptly: exit 1, one line saying it was
	// interrupted and where, no results.
	t.Run("SIGTERM during eval", func(t *testing.T) {
		const n = 300 // seconds of work at least: the signal comes long before the end
		ds := valSet(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), commandDeadline)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "eval", "--model", tiny, "--data", filepath.Join(ds, "data.yaml"), "--threads", "1")
		var out strings.Builder
		cmd.Stdout = &out
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the line eval prints once the dataset is read and the model loaded.
		sc := bufio.NewScanner(stderr)
		var lines []string
		started := false
		for !started && sc.Scan() {
			lines = append(lines, sc.Text())
			started = strings.HasPrefix(sc.Text(), fmt.Sprintf("eval: %d images, %d instances", n, n))
		}
		if !started {
			_ = cmd.Wait()
			t.Fatalf("eval ended (or %v passed) before it started evaluating:\n%s", commandDeadline, strings.Join(lines, "\n"))
		}
		signalled := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(stderr)
		err = cmd.Wait()
		if ctx.Err() != nil {
			t.Fatalf("eval still running %v after SIGTERM (killed)", commandDeadline)
		}
		t.Logf("eval exited %v after SIGTERM", time.Since(signalled).Round(time.Millisecond))
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("exit %v, want 1", err)
		}
		if !strings.Contains(string(rest), "stardetr eval: interrupted (terminated signal received) while evaluating image ") ||
			!strings.Contains(string(rest), fmt.Sprintf(" of %d: no results", n)) {
			t.Errorf("stderr after SIGTERM:\n%s", rest)
		}
		if out.Len() != 0 {
			t.Errorf("results printed after an interruption:\n%s", out.String())
		}
	})
}

// wantProblems wants `check` to exit 1 listing n problems, each of problems starting a line.
func wantProblems(t *testing.T, name string, r cmdResult, n int, problems ...string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("%s: exit %d, want 1\n%s", name, r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("has %d problem(s)", n)) {
		t.Errorf("%s: want %d problems:\n%s", name, n, r.stderr)
	}
	for _, p := range problems {
		if !strings.Contains(r.stderr, "  - "+p) {
			t.Errorf("%s: no problem %q:\n%s", name, p, r.stderr)
		}
	}
	if len(r.stderr) > 4000 {
		t.Errorf("%s: %d bytes of errors: values must be named, not printed", name, len(r.stderr))
	}
}
