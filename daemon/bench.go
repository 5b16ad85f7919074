package daemon

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/model"
)

// BenchResult is what `stardetr bench` measures: the minimum and median of each stage over
// the runs, and a bare Run() of the same session interleaved with them.
type BenchResult struct {
	Load                      time.Duration
	Preprocess, Run, Decode   Stat
	Detect                    Stat // the three together, as the pipeline calls them
	Bare                      Stat // Input.Run() alone on an already filled tensor
	Provider, ORTVersion      string
	Threads, Runs, Detections int
	// Profile is ONNX Runtime's profile of a second session of the same model (nil with
	// --profile-runs 0): the model's FLOPs and each op type's share of the kernel time.
	Profile *model.Profile
}

// Stat is the minimum and median of a set of durations.
type Stat struct{ Min, Median time.Duration }

func stat(d []time.Duration) Stat {
	s := slices.Clone(d)
	slices.Sort(s)
	return Stat{Min: s[0], Median: s[len(s)/2]}
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := modelFlags(fs)
	runs := fs.Int("runs", 10, "timed runs of each kind")
	imagePath := fs.String("image", "", "frame to detect in (default: a synthetic 1280x720 frame)")
	profileRuns := fs.Int("profile-runs", 3, "runs of a profiled session for GFLOPs and per-op shares (0: none)")
	fmaUnits := fs.Int("fma-units", 0, "FMA pipes per core for the fp32 peak (default 2, assumed: the CPU does not report it)")
	maxPixels := maxPixelsFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stardetr bench --model M [--threads N] [--runs 10] [--image I] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if cfg.Path == "" {
		fmt.Fprintln(stderr, "stardetr bench: --model is required")
		fs.Usage()
		return exitUsage
	}
	if *runs < 1 || *profileRuns < 0 || *fmaUnits < 0 {
		fmt.Fprintln(stderr, "stardetr bench: --runs must be at least 1, --profile-runs and --fma-units at least 0")
		return exitUsage
	}
	var frame gocv.Mat
	if *imagePath != "" {
		var err error
		if frame, err = readImage(*imagePath, *maxPixels); err != nil {
			fmt.Fprintln(stderr, "stardetr bench:", err)
			return exitFailure
		}
	} else {
		frame = syntheticFrame(1280, 720)
	}
	defer frame.Close()
	res, err := Bench(ctx, *cfg, frame, *runs, *profileRuns, cliLogger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "stardetr bench:", err)
		return exitFailure
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%8.2f ms", float64(d)/1e6) }
	threads := "ONNX Runtime's default"
	if res.Threads > 0 {
		threads = fmt.Sprint(res.Threads)
	}
	fmt.Fprintf(stdout, "model        %s\n", cfg.Path)
	fmt.Fprintf(stdout, "frame        %dx%d, %d detection(s) at conf %g\n", frame.Cols(), frame.Rows(), res.Detections, cfg.Conf)
	fmt.Fprintf(stdout, "provider     %s (ONNX Runtime %s), threads %s\n", res.Provider, res.ORTVersion, threads)
	fmt.Fprintf(stdout, "load         %s (read, inspect, session, first run)\n", ms(res.Load))
	fmt.Fprintf(stdout, "int8 dot     %s\n", hostInt8Dot())
	fmt.Fprintf(stdout, "%-12s %11s %11s   (%d runs)\n", "stage", "min", "median", res.Runs)
	for _, s := range []struct {
		name string
		st   Stat
	}{{"preprocess", res.Preprocess}, {"run", res.Run}, {"decode", res.Decode}, {"detect", res.Detect}, {"bare Run()", res.Bare}} {
		fmt.Fprintf(stdout, "%-12s %s %s\n", s.name, ms(s.st.Min), ms(s.st.Median))
	}
	fmt.Fprintf(stdout, "detect / bare Run(): %.3f (min), %.3f (median)\n",
		float64(res.Detect.Min)/float64(res.Bare.Min), float64(res.Detect.Median)/float64(res.Bare.Median))
	if res.Profile != nil {
		printProfile(stdout, res, *fmaUnits)
	}
	return exitOK
}

// printProfile prints what the profiled session says: the model's arithmetic, the rate the
// bare Run() achieved against the CPU's fp32 peak, CARAFE's share and the top op types.
// fmaUnits 0: assumed.
func printProfile(stdout io.Writer, res BenchResult, fmaUnits int) {
	p := res.Profile
	cores := res.Threads
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	units, assumed := fmaUnits, fmaUnits == 0
	if assumed {
		units = 2 // Intel Xeon Scalable and AMD Zen 5 cores have two 512-bit FMA pipes
	}
	peak := hostCPUPeak(cores, units, assumed)
	achieved := p.FLOPs / res.Bare.Median.Seconds()
	fmt.Fprintf(stdout, "arithmetic   %.2f GFLOPs per frame (Conv, MatMul, Gemm; 2 per multiply-accumulate)\n", p.FLOPs/1e9)
	if p.Uncounted > 0 {
		fmt.Fprintf(stdout, "             without %d nodes whose weights ONNX Runtime prepacked and left out of its profile (INT8 convolutions): see the float32 model\n", p.Uncounted)
	}
	fmt.Fprintf(stdout, "achieved     %.1f GFLOP/s at the median bare Run()\n", achieved/1e9)
	fmt.Fprintf(stdout, "fp32 peak    %s\n", peak)
	if peak.FLOPs > 0 {
		fmt.Fprintf(stdout, "share        %.0f%% of the fp32 peak\n", 100*achieved/peak.FLOPs)
	}
	fmt.Fprintf(stdout, "CARAFE       %.1f%% of the model's kernel time (%d runs profiled)\n", 100*p.Share("MMCVCARAFE"), p.Runs)
	var top []string
	for _, o := range p.Ops[:min(6, len(p.Ops))] {
		top = append(top, fmt.Sprintf("%s %.0f%%", o.Op, 100*float64(o.Time)/float64(p.Kernel)))
	}
	fmt.Fprintf(stdout, "top ops      %s\n", strings.Join(top, ", "))
}

// Bench opens the model and times Detect (with its stages) against a bare Run() of the same
// session, the two interleaved so that drift in the machine's speed affects both alike.
func Bench(ctx context.Context, cfg model.Config, frame gocv.Mat, runs, profileRuns int, log *slog.Logger) (BenchResult, error) {
	start := time.Now()
	d, err := model.Open(ctx, cfg, "", log)
	if err != nil {
		return BenchResult{}, err
	}
	defer d.Close()
	res := BenchResult{Load: time.Since(start), Provider: d.Info().Provider, ORTVersion: d.Info().ORTVersion, Threads: cfg.Threads, Runs: runs}
	out := make([]model.Detection, 0, cfg.MaxDet)
	in := d.DefaultInput()
	var pre, run, dec, det, bare []time.Duration
	for i := -1; i < runs; i++ { // i = -1: warm-up of both paths
		if err := ctx.Err(); err != nil {
			return res, err
		}
		t0 := time.Now()
		var t model.Timings
		if out, t, err = d.Detect(frame, out); err != nil {
			return res, err
		}
		total := time.Since(t0)
		t1 := time.Now()
		if err := in.Run(); err != nil {
			return res, err
		}
		b := time.Since(t1)
		if i >= 0 {
			pre, run, dec = append(pre, t.Preprocess), append(run, t.Run), append(dec, t.Decode)
			det, bare = append(det, total), append(bare, b)
		}
	}
	res.Preprocess, res.Run, res.Decode, res.Detect, res.Bare = stat(pre), stat(run), stat(dec), stat(det), stat(bare)
	res.Detections = len(out)
	if profileRuns > 0 {
		if res.Profile, err = profile(ctx, cfg, frame, profileRuns, log); err != nil {
			return res, err
		}
	}
	return res, nil
}

// profile runs the model in a profiled session of its own (profiling slows every run) and
// reads what ONNX Runtime wrote when the session closed.
func profile(ctx context.Context, cfg model.Config, frame gocv.Mat, runs int, log *slog.Logger) (*model.Profile, error) {
	dir, err := os.MkdirTemp("", "stardetr-profile-")
	if err != nil {
		return nil, fmt.Errorf("profiling: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg.ProfilePrefix = filepath.Join(dir, "ort")
	d, err := model.Open(ctx, cfg, "", log)
	if err != nil {
		return nil, err
	}
	// Open's own runs (warm-up, output shape) are in the profile too: ReadProfile counts them.
	for range runs {
		if _, _, err := d.Detect(frame, nil); err != nil {
			d.Close()
			return nil, err
		}
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(cfg.ProfilePrefix + "*.json")
	if len(files) != 1 {
		return nil, fmt.Errorf("profiling: ONNX Runtime wrote %d profile files under %s; want 1", len(files), dir)
	}
	return model.ReadProfile(files[0])
}

// syntheticFrame draws a deterministic 8-bit BGR test pattern.
func syntheticFrame(w, h int) gocv.Mat {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	pix, _ := m.DataPtrUint8()
	for y := range h {
		for x := range w {
			i := 3 * (y*w + x)
			pix[i], pix[i+1], pix[i+2] = uint8(x*255/w), uint8(y*255/h), uint8((x^y)&0xff)
		}
	}
	gocv.Rectangle(&m, image.Rect(w/4, h/4, w/2, h*3/4), color.RGBA{255, 255, 255, 0}, -1)
	return m
}
