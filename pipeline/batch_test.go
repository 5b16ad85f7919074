package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
)

// batchModel stands in for a model.Batch: it remembers the size of the frame preprocessed
// into each place and decodes place i into one box spanning that size, so a message whose
// box is not its own frame's size came from another camera's place. It records each Run's
// frame count.
type batchModel struct {
	size  int
	mu    sync.Mutex
	dims  [][2]int
	runs  []int
	block time.Duration
}

func (b *batchModel) Size() int { return b.size }

func (b *batchModel) Preprocess(i int, m gocv.Mat) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dims[i] = [2]int{m.Cols(), m.Rows()}
	return nil
}

func (b *batchModel) Run(n int) error {
	b.mu.Lock()
	b.runs = append(b.runs, n)
	b.mu.Unlock()
	// The model's time, during which the cameras' next frames arrive; no test waits on it.
	<-time.After(b.block)
	return nil
}

func (b *batchModel) Decode(i, w, h int, out []model.Detection) []model.Detection {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dims[i]
	return append(out, model.Detection{Label: "frame", Score: 0.9, Box: [4]float32{0, 0, float32(d[0]), float32(d[1])}})
}

func (b *batchModel) runCounts() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.runs...)
}

// synthSource is a camera made in the test: grey frames of one size at a fixed rate, from
// a camera.FramePool as the camera package's own sources do.
type synthSource struct {
	name  string
	w, h  int
	every time.Duration
}

func (s *synthSource) Run(ctx context.Context, sink func(*camera.Frame)) error {
	pool := camera.NewFramePool(camera.FramePoolSize, s.name)
	defer pool.Close()
	picture := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), s.h, s.w, gocv.MatTypeCV8UC3)
	defer picture.Close()
	rate := time.NewTicker(s.every) // the camera's frame rate
	defer rate.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-rate.C:
		}
		seq++
		f := pool.Get()
		if f == nil { // the consumer holds every frame: this one is dropped
			continue
		}
		picture.CopyTo(&f.Mat)
		f.Seq, f.Time = seq, time.Now()
		sink(f)
	}
}

func (s *synthSource) State() camera.State { return camera.State{Phase: camera.PhaseStreaming} }

// Four cameras of four frame sizes share slots of four places: runs take several cameras'
// frames at once, never more than the slot holds, and each camera's messages carry the
// detections of its own frame.
func TestBatchedCameras(t *testing.T) {
	sizes := [][2]int{{320, 240}, {160, 120}, {256, 144}, {96, 64}}
	// Two slots, each its own stand-in (as two model.Batch have their own tensors).
	mdl := &batchModel{size: 4, dims: make([][2]int, 4), block: 100 * time.Millisecond}
	mdl2 := &batchModel{size: 4, dims: make([][2]int, 4), block: 100 * time.Millisecond}
	rec := &recorder{}
	p := pipeline.New([]pipeline.Slot{mdl, mdl2}, rec, pipeline.Options{BatchWait: 50 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	var cams []pipeline.Camera
	for i, s := range sizes {
		name := fmt.Sprintf("cam%d", i)
		cams = append(cams, pipeline.Camera{Name: name, Key: "1", Source: &synthSource{name: name, w: s[0], h: s[1], every: 50 * time.Millisecond},
			Policy: pipeline.Policy{Mode: pipeline.PolicyEvery}})
	}
	if err := p.Update(cams); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	perCam := func() map[string]int {
		n := map[string]int{}
		for _, m := range rec.snapshot() {
			n[m.Camera]++
		}
		return n
	}
	waitFor(t, "5 messages from every camera", 30*time.Second, func() bool {
		n := perCam()
		for _, c := range cams {
			if n[c.Name] < 5 {
				return false
			}
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	runs := append(mdl.runCounts(), mdl2.runCounts()...)
	batched := 0
	for _, n := range runs {
		if n < 1 || n > 4 {
			t.Fatalf("a run of %d frames in slots of 4", n)
		}
		if n > 1 {
			batched++
		}
	}
	t.Logf("%d runs, %d of them with several cameras' frames: %v", len(runs), batched, runs)
	if batched == 0 {
		t.Error("no run took more than one camera's frame")
	}
	want := map[string][2]int{}
	for i, s := range sizes {
		want[fmt.Sprintf("cam%d", i)] = s
	}
	for _, m := range rec.snapshot() {
		s := want[m.Camera]
		if m.Width != s[0] || m.Height != s[1] || len(m.Detections) != 1 {
			t.Fatalf("message of %s: %dx%d with %d detections; its frames are %dx%d", m.Camera, m.Width, m.Height, len(m.Detections), s[0], s[1])
		}
		if b := m.Detections[0].Box; b[2] != float32(s[0]) || b[3] != float32(s[1]) {
			t.Fatalf("message of %s carries the detections of a %vx%v frame: another camera's", m.Camera, b[2], b[3])
		}
	}
}
