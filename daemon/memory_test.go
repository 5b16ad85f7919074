package daemon_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// The memory benchmarks compare the daemon with a bare ONNX Runtime host (cmd/orthost:
// the same model, plugin, threads and ONNX Runtime options, nothing else) measured side by
// side in one run. Peak resident set (VmHWM) is what a small board has to fit. Run with
//
//	go test -tags gocv_specific_modules,gocv_videoio -run '^$' -bench Memory -benchtime 1x ./daemon/
//
// The machine is shared: times are as measured under whatever load there is; ratios taken in
// one run are what count.

// memFrames is how many frames the daemon processes before its peak is read: the first runs
// grow ONNX Runtime's buffers, later ones reuse them (make soak-memory checks the long run).
const memFrames = 6

// benchTools builds the daemon and the bare host once per benchmark.
func benchTools(b *testing.B) (daemonBin, hostBin string) {
	b.Helper()
	daemonBin = buildStardetr(b)
	hostBin = filepath.Join(b.TempDir(), "orthost")
	cmd := exec.Command("go", "build", "-o", hostBin, "./cmd/orthost")
	cmd.Dir = testenv.RepoRoot(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/orthost: %v\n%s", err, out)
	}
	return daemonBin, hostBin
}

// clip720 generates a 1280x720 clip (ffmpeg's moving test pattern, 10 fps, 10 s): a 720p camera,
// H.264 as IP cameras send it.
func clip720(b *testing.B) string {
	return makeClip(b, "clip720.mp4", "libx264", "-pix_fmt", "yuv420p")
}

// clip720MJPEG is the same pattern in MJPEG, as USB cameras send it.
func clip720MJPEG(b *testing.B) string { return makeClip(b, "clip720.avi", "mjpeg", "-q:v", "5") }

func makeClip(b *testing.B, name, codec string, opts ...string) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), name)
	args := append([]string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", "testsrc2=size=1280x720:rate=10", "-t", "10", "-c:v", codec}, opts...)
	out, err := exec.Command("ffmpeg", append(args, path)...).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v\n%s (ffmpeg is installed by scripts/setup: run `make setup`)", err, out)
	}
	return path
}

// hostResult is one bare-host run: peak and final resident set, anonymous memory, ms per run.
type hostResult struct {
	HWM, RSS, Anon int64 // kB
	MS             float64
}

// daemonORTOptions are the bare host's flags for the daemon's default model.memory options
// other than map_weights (mappedORTOptions).
var daemonORTOptions = []string{"-arena=false", "-mempattern=true"}

// mappedORTOptions make the bare host run an optimised ORT-format copy as the daemon does with
// model.memory.map_weights: from a read-only mapping, the weights used in place. noPrepack is
// what the daemon adds for a float model (model/optimized.go).
var (
	mappedORTOptions = []string{"-mmap", "-config", "session.use_ort_model_bytes_directly=1",
		"-config", "session.use_ort_model_bytes_for_initializers=1"}
	noPrepack = []string{"-config", "session.disable_prepacking=1"}
)

// runHost runs the bare host on model with 2 threads and the ONNX Runtime options in opts
// (orthost flags).
func runHost(b *testing.B, bin, model string, size, runs int, opts []string) hostResult {
	b.Helper()
	args := append([]string{"-ort", testenv.ONNXRuntime(b), "-model", model, "-plugin", testenv.Plugin(b),
		"-threads", "2", "-runs", strconv.Itoa(runs), "-imgsz", strconv.Itoa(size)}, opts...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("orthost %v: %v\n%s", args, err, out)
	}
	var r hostResult
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "hwm_kb %d rss_kb %d anon_kb %d ms_per_run %f", &r.HWM, &r.RSS, &r.Anon, &r.MS); err != nil {
		b.Fatalf("orthost output %q: %v", out, err)
	}
	return r
}

const memConfig = `
device_id: mem
state_dir: %[1]s/state
log_level: warn
model:
  path: %[2]s
  plugin: %[3]s
  onnxruntime: %[4]s
  threads: 2
  conf: 0.5
  max_det: 5
%[8]scameras:
%[5]s
mqtt:
  brokers: [mqtt://127.0.0.1:%[6]d]
  embedded:
    enabled: true
    listen: 127.0.0.1:%[6]d
  stats_interval: 10s
http:
  listen: 127.0.0.1:%[7]d
`

// daemonResult is the daemon's memory once every camera has delivered memFrames frames.
type daemonResult struct {
	HWM, RSS, Anon int64 // kB
	HeapInuse      float64
}

// runDaemon starts the daemon with the demo's settings (embedded broker, realtime pacing) on
// cameras copies of clip, waits until memFrames frames per camera went through the model,
// reads its memory and stops it with SIGTERM.
func runDaemon(b *testing.B, bin, model, clip string, cameras int) daemonResult {
	b.Helper()
	return runDaemonIn(b, b.TempDir(), bin, model, clip, cameras, "")
}

// runDaemonIn is runDaemon with dir holding the configuration and the state folder (dir/state),
// which a later run in the same dir finds again, and modelYAML added to the model section
// (indented lines, each ending in a newline).
func runDaemonIn(b *testing.B, dir, bin, model, clip string, cameras int, modelYAML string) daemonResult {
	b.Helper()
	var cams strings.Builder
	for i := range cameras {
		fmt.Fprintf(&cams, "  - {name: cam%d, url: %s, loop: true, pace: realtime, publish: {policy: every, interval: 1s}}\n", i, clip)
	}
	httpPort := testenv.FreePort(b)
	conf := fmt.Sprintf(memConfig, dir, model, testenv.Plugin(b), testenv.ONNXRuntime(b), cams.String(), testenv.FreePort(b), httpPort, modelYAML)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	d := startDaemon(b, bin, cfgPath)
	defer func() { _ = d.stop(10 * time.Second) }() // the next run measures a daemon alone
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	var r daemonResult
	const limit = 5 * time.Minute
	// Scraping is not free: twice a second.
	if !testenv.Poll(limit, 500*time.Millisecond, func() bool {
		select {
		case err := <-d.exited:
			d.exited <- err
			b.Fatalf("daemon exited early: %v", err)
		default:
		}
		body, ok := scrape(url)
		if !ok || minSeries(body, "stardetr_frames_processed_total", cameras) < memFrames {
			return false
		}
		pid := d.cmd.Process.Pid
		r.HWM, r.RSS = procField(b, pid, "status", "VmHWM:"), procField(b, pid, "status", "VmRSS:")
		r.Anon = procField(b, pid, "smaps_rollup", "Anonymous:")
		r.HeapInuse = minSeries(body, "go_memstats_heap_inuse_bytes", 1)
		return true
	}) {
		b.Fatalf("waited %v for %d frames per camera through the model", limit, memFrames)
	}
	return r
}

// otherStardetrs counts the running processes named stardetr.
func otherStardetrs() int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	n := 0
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(b)) == "stardetr" {
			n++
		}
	}
	return n
}

// scrape fetches /metrics; ok is false while the daemon is not listening yet.
func scrape(url string) (body []byte, ok bool) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return body, err == nil && resp.StatusCode == http.StatusOK
}

// minSeries is the smallest value among the series of metric name (labelled or not); -1 when
// fewer than want series are present.
func minSeries(body []byte, name string, want int) float64 {
	best, n := -1.0, 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		if n == 0 || v < best {
			best = v
		}
		n++
	}
	if n < want {
		return -1
	}
	return best
}

// procField reads a kB field of /proc/<pid>/<file>.
func procField(b *testing.B, pid int, file, name string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/%s %s: %v", pid, file, name, err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/%s has no %s", pid, file, name)
	return 0
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

// memRounds is how many times BenchmarkMemory runs the daemon and the bare host for a model.
const memRounds = 3

// median of a few kB figures (the upper one of an even count).
func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// mbs formats kB figures as whole MB.
func mbs(v []int64) string {
	out := make([]string, len(v))
	for i, kb := range v {
		out[i] = strconv.FormatInt(kb/1024, 10)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// BenchmarkMemory prints the daemon's peak resident set against the bare ONNX Runtime host's
// for the tiny model (128x128) and the seed model at 640 (one 720p camera, 2 threads), and what
// each further 720p camera adds (tiny model, 1 and 3 cameras).
func BenchmarkMemory(b *testing.B) {
	if n := otherStardetrs(); n > 0 {
		fmt.Printf("WARNING: %d other stardetr processes are running: the library pages they share with the daemon measured here stay resident (MADV_PAGEOUT only drops pages one process maps), so its figures come out higher; run alone\n", n)
	}
	daemonBin, hostBin := benchTools(b)
	clip := clip720(b)
	for _, m := range []struct {
		name string
		size int
	}{{"tiny.onnx", 128}, {"seed-640.onnx", 640}} {
		name := m.name
		b.Run(strings.TrimSuffix(name, ".onnx"), func(b *testing.B) {
			model := testenv.Model(b, name)
			// The daemon's first start with a model writes the optimised copy that later
			// starts map (model.memory.map_weights); it is reported on its own.
			dir := b.TempDir()
			first := runDaemonIn(b, dir, daemonBin, model, clip, 1, "")
			copies, _ := filepath.Glob(filepath.Join(dir, "state", "optimized", "*.ort"))
			if len(copies) != 1 {
				b.Fatalf("the daemon's first start left %v in state/optimized", copies)
			}
			mapped := append(append(slices.Clone(daemonORTOptions), mappedORTOptions...), noPrepack...) // both models are float
			// Peaks move by tens of MB from run to run (how ONNX Runtime's session build and
			// per-run buffers land in the C heap): each runs memRounds times, in turn, and the
			// medians are compared.
			var daemons, defaults, sameOpts, daemonAnon, sameAnon, heapPeak, heapAnon []int64
			var last daemonResult
			onHeap := b.TempDir() // model.memory.map_weights: false
			for range memRounds {
				hp := runDaemonIn(b, onHeap, daemonBin, model, clip, 1, "  memory: {map_weights: false}\n")
				heapPeak, heapAnon = append(heapPeak, hp.HWM), append(heapAnon, hp.Anon)
				defaults = append(defaults, runHost(b, hostBin, model, m.size, memFrames, nil).HWM)
				h := runHost(b, hostBin, copies[0], m.size, memFrames, mapped)
				sameOpts, sameAnon = append(sameOpts, h.HWM), append(sameAnon, h.Anon)
				last = runDaemonIn(b, dir, daemonBin, model, clip, 1, "")
				daemons, daemonAnon = append(daemons, last.HWM), append(daemonAnon, last.Anon)
			}
			dm, dflt, same := median(daemons), median(defaults), median(sameOpts)
			b.ReportMetric(mb(dm), "daemon-peak-MB")
			b.ReportMetric(mb(same), "bare-peak-MB")
			b.ReportMetric(float64(dm)/float64(same), "daemon/bare")
			b.ReportMetric(float64(dm)/float64(dflt), "daemon/bare-ort-defaults")
			b.Logf("%s: peak resident set, median of %d runs each (all runs):", name, memRounds)
			b.Logf("  daemon                                            %6.1f MB %v (first start, writing the optimised copy: %.1f MB)",
				mb(dm), mbs(daemons), mb(first.HWM))
			b.Logf("  bare host, the daemon's ONNX Runtime options      %6.1f MB %v: daemon/bare %.3f", mb(same), mbs(sameOpts), float64(dm)/float64(same))
			b.Logf("  bare host, ONNX Runtime's defaults, ONNX file     %6.1f MB %v: daemon/bare %.3f", mb(dflt), mbs(defaults), float64(dm)/float64(dflt))
			b.Logf("%s: anonymous memory (not file-backed), median: daemon %.1f MB %v (Go heap in use %.1f MB in the last run), bare host with the daemon's options %.1f MB %v",
				name, mb(median(daemonAnon)), mbs(daemonAnon), last.HeapInuse/(1<<20), mb(median(sameAnon)), mbs(sameAnon))
			b.Logf("%s: daemon with model.memory.map_weights: false: peak %.1f MB %v, anonymous %.1f MB %v",
				name, mb(median(heapPeak)), mbs(heapPeak), mb(median(heapAnon)), mbs(heapAnon))
		})
	}
	// What each further camera adds; scripts/capture-memory measures what OpenCV and FFmpeg
	// alone take for the same clips.
	for _, c := range []struct{ name, clip string }{{"per-camera-h264", clip}, {"per-camera-mjpeg", clip720MJPEG(b)}} {
		b.Run(c.name, func(b *testing.B) {
			model := testenv.Model(b, "tiny.onnx")
			one := runDaemon(b, daemonBin, model, c.clip, 1)
			three := runDaemon(b, daemonBin, model, c.clip, 3)
			per := float64(three.HWM-one.HWM) / 2 / 1024
			b.ReportMetric(per, "MB/camera")
			b.Logf("720p cameras (%s): 1 camera peak %.1f MB, 3 cameras %.1f MB: %.1f MB per added camera (anonymous %.1f MB)",
				filepath.Ext(c.clip), mb(one.HWM), mb(three.HWM), per, float64(three.Anon-one.Anon)/2/1024)
		})
	}
}

// BenchmarkMemoryORTOptions runs the bare host on the seed model at 640 with each ONNX
// Runtime memory option, twice in turn, and prints peak memory and ms per run side by side.
func BenchmarkMemoryORTOptions(b *testing.B) {
	_, hostBin := benchTools(b)
	model := testenv.Model(b, "seed-640.onnx")
	// The optimised ORT-format copy that model.memory.map_weights makes, made the same way.
	optimized := filepath.Join(b.TempDir(), "seed-640.ort")
	runHost(b, hostBin, model, 640, 0, append(slices.Clone(daemonORTOptions), "-save", optimized))
	own := "session.use_device_allocator_for_initializers=1"
	variants := []struct {
		name  string
		model string
		args  []string
	}{
		{"ORT defaults (arena, mem pattern), from bytes", model, []string{"-bytes"}},
		{"ORT defaults (arena, mem pattern), from path", model, nil},
		{"arena off", model, daemonORTOptions},
		{"arena off, no memory pattern", model, []string{"-arena=false", "-mempattern=false"}},
		{"arena on, no memory pattern", model, []string{"-mempattern=false"}},
		{"arena on, initializers in their own buffers", model, []string{"-config", own}},
		{"arena off, initializers in their own buffers", model, []string{"-arena=false", "-config", own}},
		{"arena off, no prepacking", model, append(slices.Clone(daemonORTOptions), noPrepack...)},
		{"arena off, ORT format from its path", optimized, daemonORTOptions},
		{"arena off, ORT format mapped in place", optimized, append(slices.Clone(daemonORTOptions), mappedORTOptions...)},
		{"arena off, ORT format mapped in place, no prepacking (default, float)", optimized, append(append(slices.Clone(daemonORTOptions), mappedORTOptions...), noPrepack...)},
	}
	results := make([][]hostResult, len(variants))
	for range 2 {
		for i, v := range variants {
			results[i] = append(results[i], runHost(b, hostBin, v.model, 640, 4, v.args))
		}
	}
	// Printed, not logged: a benchmark's log is cut after a few lines.
	fmt.Printf("%-60s %9s %9s %9s %9s\n", "seed-640, 2 threads (min of 2)", "peak MB", "end MB", "anon MB", "ms/run")
	for i, v := range variants {
		best := results[i][0]
		for _, r := range results[i][1:] {
			best.HWM, best.RSS, best.Anon = min(best.HWM, r.HWM), min(best.RSS, r.RSS), min(best.Anon, r.Anon)
			best.MS = min(best.MS, r.MS)
		}
		fmt.Printf("%-60s %9.1f %9.1f %9.1f %9.1f\n", v.name, mb(best.HWM), mb(best.RSS), mb(best.Anon), best.MS)
	}
}
