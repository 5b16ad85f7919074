package model_test

import (
	"image"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// frame720 is the test image stretched to 1280x720, a camera's frame size.
func frame720(t testing.TB) gocv.Mat {
	src := readFrame(t, "testdata/frame.jpg")
	m := gocv.NewMat()
	gocv.Resize(src, &m, image.Pt(1280, 720), 0, 0, gocv.InterpolationLinear)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestDetectAllocatesNothing(t *testing.T) {
	cfg := testConfig(t, testModel("dynamic_nometa"))
	cfg.Imgsz = []int{640}
	cfg.Conf = 0.1
	d := openDetector(t, cfg)
	frame := frame720(t)
	in, err := d.NewInput()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]model.Detection, 0, cfg.MaxDet)
	var n int
	for name, f := range map[string]func(){
		"Detector.Detect": func() {
			var err error
			if out, _, err = d.Detect(frame, out); err != nil {
				t.Fatal(err)
			}
			n = len(out)
		},
		"Input stages": func() {
			if err := in.Preprocess(frame); err != nil {
				t.Fatal(err)
			}
			if err := in.Run(); err != nil {
				t.Fatal(err)
			}
			out = in.Decode(frame.Cols(), frame.Rows(), out)
		},
	} {
		f() // first frame may size the buffers
		if allocs := testing.AllocsPerRun(20, f); allocs != 0 {
			t.Errorf("%s: %v heap allocations per frame; want 0", name, allocs)
		}
	}
	if n == 0 {
		t.Error("no detections: the test does not exercise decoding")
	}
}

func BenchmarkPreprocess1280x720To640(b *testing.B) {
	cfg := testConfig(b, testModel("dynamic_nometa"))
	cfg.Imgsz = []int{640}
	d := openDetector(b, cfg)
	frame := frame720(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Preprocess(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode300Queries(b *testing.B) {
	d := openDetector(b, testConfig(b, testenv.Model(b, "tiny.onnx")))
	frame := frame720(b)
	if _, _, err := d.Detect(frame, nil); err != nil {
		b.Fatal(err)
	}
	out := make([]model.Detection, 0, 100)
	b.ReportAllocs()
	for b.Loop() {
		out = d.Decode(1280, 720, out)
	}
}

// BenchmarkSeed640 times the seed model at 640x640 on 1 and 2 threads: Detect on a 1280x720
// frame against a bare Run() of the same session (interleaved), and against PyTorch eager on
// the same threads (model/testdata/torchref.py), and reports the ratios.
func BenchmarkSeed640(b *testing.B) {
	root := testenv.RepoRoot(b)
	path := testenv.Model(b, "seed-640.onnx")
	frame := frame720(b)
	for _, threads := range []int{1, 2} {
		b.Run("threads="+strconv.Itoa(threads), func(b *testing.B) {
			cfg := testConfig(b, path)
			cfg.Plugin = testenv.Plugin(b)
			cfg.Threads = threads
			d := openDetector(b, cfg)
			out := make([]model.Detection, 0, cfg.MaxDet)
			in := d.DefaultInput()
			var detect, bare time.Duration
			runs := 0
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				var err error
				if out, _, err = d.Detect(frame, out); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := in.Run(); err != nil {
					b.Fatal(err)
				}
				detect += t1.Sub(t0)
				bare += time.Since(t1)
				runs++
			}
			b.ReportMetric(float64(detect.Milliseconds())/float64(runs), "detect-ms")
			b.ReportMetric(float64(bare.Milliseconds())/float64(runs), "bare-run-ms")
			b.ReportMetric(float64(detect)/float64(bare), "detect/bare")
			torch := runPythonIn(b, root, "model/testdata/torchref.py", "bench", "seed", "1", "0", "640", "640", strconv.Itoa(threads), "3")
			torchMS, err := strconv.ParseFloat(strings.TrimSpace(string(torch)), 64)
			if err != nil {
				b.Fatalf("torchref bench: %q", torch)
			}
			b.ReportMetric(torchMS, "torch-eager-ms")
			b.ReportMetric(torchMS/(float64(detect.Milliseconds())/float64(runs)), "torch/detect")
			b.Logf("threads %d (%s): detect %.1f ms, bare Run %.1f ms, ratio %.3f; PyTorch eager %.1f ms, %.2fx slower",
				threads, runtime.GOARCH, float64(detect.Milliseconds())/float64(runs), float64(bare.Milliseconds())/float64(runs),
				float64(detect)/float64(bare), torchMS, torchMS/(float64(detect.Milliseconds())/float64(runs)))
		})
	}
}

// BenchmarkInt8Seed640 times the seed model at 640x640 in float32 and in INT8 (`make
// build/models/seed-640-int8.onnx`), the two Detects interleaved frame by frame so that the
// machine's drift affects both alike, on 1 and 2 threads, and reports int8's speed-up.
func BenchmarkInt8Seed640(b *testing.B) {
	fp32, int8 := testenv.Model(b, "seed-640.onnx"), testenv.Model(b, "seed-640-int8.onnx")
	frame := frame720(b)
	for _, threads := range []int{1, 2} {
		b.Run("threads="+strconv.Itoa(threads), func(b *testing.B) {
			var dets [2]*model.Detector
			for i, path := range []string{fp32, int8} {
				cfg := testConfig(b, path)
				cfg.Plugin = testenv.Plugin(b)
				cfg.Threads = threads
				dets[i] = openDetector(b, cfg)
			}
			out := make([]model.Detection, 0, 100)
			var took [2][]time.Duration
			for b.Loop() {
				for i, d := range dets {
					t0 := time.Now()
					var err error
					if out, _, err = d.Detect(frame, out); err != nil {
						b.Fatal(err)
					}
					took[i] = append(took[i], time.Since(t0))
				}
			}
			med := func(d []time.Duration) float64 {
				s := slices.Clone(d)
				slices.Sort(s)
				return float64(s[len(s)/2]) / 1e6
			}
			f, q := med(took[0]), med(took[1])
			b.ReportMetric(f, "fp32-ms")
			b.ReportMetric(q, "int8-ms")
			b.ReportMetric(f/q, "int8-speedup")
			b.Logf("threads %d: median detect fp32 %.1f ms, int8 %.1f ms: int8 %.2fx faster (%d frames each)", threads, f, q, f/q, len(took[0]))
		})
	}
}
