// Command orthost is the bare ONNX Runtime host that stardetr's memory is compared with: it
// loads a model into ONNX Runtime with the CARAFE plugin and the given threads and session
// options, runs it on a zero input, and prints its peak resident set size. It uses
// onnxruntime_go alone (no OpenCV, no stardetr package), so its memory is ONNX Runtime's own
// plus a small Go runtime. The daemon's memory benchmark (daemon/memory_test.go) runs it side
// by side with the daemon.
//
//	go run ./cmd/orthost -ort LIB -model M.onnx -plugin P.so -threads 2 -runs 5
//
// Output, one line on stdout: "hwm_kb N rss_kb N anon_kb N ms_per_run F" (peak and current
// resident set, current anonymous memory, mean time of the runs after the first). With -save F
// it also writes the optimised model in ONNX Runtime's format to F, as the daemon does for
// model.memory.map_weights. ONNX Runtime's telemetry is off, as in the daemon.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/stardetr/stardetr/internal/mapfile"
)

func main() {
	// One OS thread calls ONNX Runtime throughout, as in a C program's main thread: Go would
	// otherwise move the calls between threads, and glibc's per-thread malloc arenas would make
	// the peak depend on which threads ran them.
	runtime.LockOSThread()
	lib := flag.String("ort", "", "ONNX Runtime shared library (required)")
	path := flag.String("model", "", "ONNX model (required)")
	plugin := flag.String("plugin", "", "CARAFE custom-op library")
	threads := flag.Int("threads", 0, "intra-op threads (0: ONNX Runtime decides)")
	runs := flag.Int("runs", 3, "runs after the first")
	size := flag.Int("imgsz", 640, "input height and width")
	arena := flag.Bool("arena", true, "ONNX Runtime's CPU memory arena")
	pattern := flag.Bool("mempattern", true, "ONNX Runtime's memory pattern")
	fromBytes := flag.Bool("bytes", false, "load the model from a byte slice read by Go instead of from the path")
	mapped := flag.Bool("mmap", false, "load the model from a read-only mapping of the file instead of from the path")
	save := flag.String("save", "", "write the optimised model in ONNX Runtime's format to this file")
	var entries []string
	flag.Func("config", "session config entry key=value (repeatable)", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("want key=value, got %q", s)
		}
		entries = append(entries, s)
		return nil
	})
	flag.Parse()
	if *lib == "" || *path == "" {
		fmt.Fprintln(os.Stderr, "orthost: -ort and -model are required")
		os.Exit(2)
	}
	h := host{lib: *lib, path: *path, plugin: *plugin, threads: *threads, runs: *runs, size: *size, arena: *arena,
		pattern: *pattern, fromBytes: *fromBytes, mapped: *mapped, save: *save, entries: entries}
	if err := h.run(); err != nil {
		fmt.Fprintln(os.Stderr, "orthost:", err)
		os.Exit(1)
	}
}

// host is what the flags ask for.
type host struct {
	lib, path, plugin, save string
	threads, runs, size     int
	arena, pattern          bool
	fromBytes, mapped       bool
	entries                 []string
}

func (h host) run() error {
	if err := os.Setenv("ORT_DISABLE_TELEMETRY", "1"); err != nil {
		return err
	}
	ort.SetSharedLibraryPath(h.lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return err
	}
	defer ort.DestroyEnvironment()
	opts, err := h.sessionOptions()
	if err != nil {
		return err
	}
	defer opts.Destroy()
	in, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, int64(h.size), int64(h.size)))
	if err != nil {
		return err
	}
	defer in.Destroy()
	s, err := h.openSession(opts)
	if err != nil {
		return err
	}
	defer s.Destroy()
	ms, err := h.timeRuns(s, in)
	if err != nil {
		return err
	}
	fmt.Printf("hwm_kb %d rss_kb %d anon_kb %d ms_per_run %.1f\n", field("/proc/self/status", "VmHWM:"),
		field("/proc/self/status", "VmRSS:"), field("/proc/self/smaps_rollup", "Anonymous:"), ms)
	return nil
}

// sessionOptions are the threads, arena, memory pattern, config entries, save path and
// plugin the flags ask for; the caller destroys them.
func (h host) sessionOptions() (_ *ort.SessionOptions, err error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			opts.Destroy()
		}
	}()
	if h.threads > 0 {
		if err := opts.SetIntraOpNumThreads(h.threads); err != nil {
			return nil, err
		}
	}
	if err := opts.SetCpuMemArena(h.arena); err != nil {
		return nil, err
	}
	if err := opts.SetMemPattern(h.pattern); err != nil {
		return nil, err
	}
	for _, e := range h.entries {
		k, v, _ := strings.Cut(e, "=")
		if err := opts.AddSessionConfigEntry(k, v); err != nil {
			return nil, err
		}
	}
	if h.save != "" {
		if err := opts.SetOptimizedModelFilePath(h.save); err != nil {
			return nil, err
		}
		if err := opts.AddSessionConfigEntry("session.save_model_format", "ORT"); err != nil {
			return nil, err
		}
	}
	if h.plugin != "" {
		if err := opts.RegisterCustomOpsLibrary(h.plugin); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// openSession loads the model from its path, or from bytes read by Go (-bytes) or a
// read-only mapping (-mmap); the caller destroys the session.
func (h host) openSession(opts *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
	names := []string{"images"}
	outNames := []string{"output0"}
	if !h.fromBytes && !h.mapped {
		return ort.NewDynamicAdvancedSession(h.path, names, outNames, opts)
	}
	var data []byte
	var err error
	if h.mapped {
		data, err = mapfile.ReadOnly(h.path)
	} else {
		data, err = os.ReadFile(h.path)
	}
	if err != nil {
		return nil, err
	}
	return ort.NewDynamicAdvancedSessionWithONNXData(data, names, outNames, opts)
}

// timeRuns runs the session on in 1+runs times and returns the mean milliseconds of the runs
// after the first (0 without any).
func (h host) timeRuns(s *ort.DynamicAdvancedSession, in ort.Value) (float64, error) {
	var total time.Duration
	for i := 0; i <= h.runs; i++ {
		outs := []ort.Value{nil}
		t0 := time.Now()
		if err := s.Run([]ort.Value{in}, outs); err != nil {
			return 0, err
		}
		if i > 0 {
			total += time.Since(t0)
		}
		outs[0].Destroy()
	}
	if h.runs <= 0 {
		return 0, nil
	}
	return float64(total.Microseconds()) / 1e3 / float64(h.runs), nil
}

// field reads one kB field of a /proc file such as /proc/self/status.
func field(file, name string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}
