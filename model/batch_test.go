package model_test

import (
	"image"
	"math"
	"strconv"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// cameraFrames are four different pictures of different sizes, as four cameras would give.
func cameraFrames(t testing.TB) []gocv.Mat {
	src := readFrame(t, "testdata/frame.jpg")
	var frames []gocv.Mat
	for i, size := range []image.Point{{1280, 720}, {640, 480}, {320, 240}, {800, 600}} {
		m := gocv.NewMat()
		gocv.Resize(src, &m, size, 0, 0, gocv.InterpolationLinear)
		if i%2 == 1 {
			gocv.Flip(m, &m, 1)
		}
		if i == 2 {
			gocv.Rotate(m, &m, gocv.Rotate180Clockwise)
		}
		frames = append(frames, m)
		t.Cleanup(func() { m.Close() })
	}
	return frames
}

// TestBatchMatchesSingleRuns: the detections of each frame of a batched run equal those of
// the same frame run alone, for every batch size.
func TestBatchMatchesSingleRuns(t *testing.T) {
	cfg := testConfig(t, testenv.Model(t, "tiny-dynamic.onnx"))
	cfg.Plugin = testenv.Plugin(t)
	cfg.Conf = 0.2
	d := openDetector(t, cfg)
	if d.Info().MaxBatch != 0 {
		t.Fatalf("tiny-dynamic: MaxBatch %d; want 0 (dynamic)", d.Info().MaxBatch)
	}
	frames := cameraFrames(t)
	var single [][]model.Detection
	for _, f := range frames {
		dets, _, err := d.Detect(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(dets) == 0 {
			t.Fatal("no detections: the comparison would be empty")
		}
		single = append(single, dets)
	}
	b, err := d.NewBatch(len(frames))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for k := 1; k <= len(frames); k++ {
		for i := range k {
			if err := b.Item(i).Preprocess(frames[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Run(k); err != nil {
			t.Fatal(err)
		}
		for i := range k {
			got := b.Item(i).Decode(frames[i].Cols(), frames[i].Rows(), nil)
			want := single[i]
			if len(got) != len(want) {
				t.Fatalf("batch of %d, frame %d: %d detections; alone %d", k, i, len(got), len(want))
			}
			for j := range got {
				g, w := got[j], want[j]
				if g.ClassID != w.ClassID || math.Abs(float64(g.Score-w.Score)) > 1e-4 {
					t.Errorf("batch of %d, frame %d, detection %d: %+v; alone %+v", k, i, j, g, w)
				}
				for c := range 4 {
					if math.Abs(float64(g.Box[c]-w.Box[c])) > 0.05 {
						t.Errorf("batch of %d, frame %d, detection %d: box %v; alone %v", k, i, j, g.Box, w.Box)
						break
					}
				}
			}
		}
	}
	if err := b.Run(len(frames) + 1); err == nil {
		t.Error("Run of more frames than the batch holds: no error")
	}
	if err := b.Item(0).Run(); err == nil {
		t.Error("Run of a batch item on its own: no error")
	}

	// Steady state allocates nothing.
	out := make([]model.Detection, 0, cfg.MaxDet)
	if allocs := testing.AllocsPerRun(5, func() {
		for i, f := range frames {
			if err := b.Item(i).Preprocess(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Run(len(frames)); err != nil {
			t.Fatal(err)
		}
		for i, f := range frames {
			out = b.Item(i).Decode(f.Cols(), f.Rows(), out)
		}
	}); allocs != 0 {
		t.Errorf("%v heap allocations per batch; want 0", allocs)
	}
}

func TestBatchNeedsDynamicBatchAxis(t *testing.T) {
	cfg := testConfig(t, testenv.Model(t, "tiny.onnx"))
	cfg.Plugin = testenv.Plugin(t)
	d := openDetector(t, cfg)
	if d.Info().MaxBatch != 1 {
		t.Errorf("tiny (fixed batch): MaxBatch %d; want 1", d.Info().MaxBatch)
	}
	_, err := d.NewBatch(2)
	testenv.WantError(t, err, "fixed batch of 1", "dynamic", "model.batch")
	b, err := d.NewBatch(1)
	if err != nil {
		t.Fatalf("a batch of one frame on a fixed-batch model: %v", err)
	}
	b.Close()
}

// BenchmarkBatchedCameras: total frames/s of the seed model at 640 (dynamic batch) for 1, 2
// and 4 cameras at 2 threads, one Run for all their frames vs one Run per frame, interleaved.
func BenchmarkBatchedCameras(b *testing.B) {
	cfg := testConfig(b, testenv.Model(b, "seed-640-dynamic.onnx"))
	cfg.Plugin = testenv.Plugin(b)
	cfg.Threads = 2
	d := openDetector(b, cfg)
	frames := cameraFrames(b)
	for _, n := range []int{1, 2, 4} {
		b.Run("cameras="+strconv.Itoa(n), func(b *testing.B) {
			batch, err := d.NewBatch(n)
			if err != nil {
				b.Fatal(err)
			}
			defer batch.Close()
			one := d.DefaultInput()
			out := make([]model.Detection, 0, 100)
			var batched, single time.Duration
			for b.Loop() {
				t0 := time.Now()
				for i := range n {
					if err := batch.Item(i).Preprocess(frames[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Run(n); err != nil {
					b.Fatal(err)
				}
				for i := range n {
					out = batch.Item(i).Decode(frames[i].Cols(), frames[i].Rows(), out)
				}
				t1 := time.Now()
				for i := range n {
					if out, _, err = one.Detect(frames[i], out); err != nil {
						b.Fatal(err)
					}
				}
				batched, single = batched+t1.Sub(t0), single+time.Since(t1)
			}
			fb, fs := float64(n*b.N)/batched.Seconds(), float64(n*b.N)/single.Seconds()
			b.ReportMetric(fb, "batched-fps")
			b.ReportMetric(fs, "single-fps")
			b.ReportMetric(fb/fs, "batched/single")
			b.Logf("%d cameras, 2 threads: batched %.2f frames/s, one Run per frame %.2f frames/s: %.2fx", n, fb, fs, fb/fs)
		})
	}
}
