package pipeline_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
)

// slowDetector stands in for the model: it takes a fixed time per frame and reports one box
// whose score alternates, so the publish policy has something to filter.
type slowDetector struct {
	delay time.Duration
	mu    sync.Mutex
	n     int
	w, h  int
	block chan struct{} // when non-nil, Infer waits on it: a stuck inference
}

func (d *slowDetector) Preprocess(m gocv.Mat) error {
	d.mu.Lock()
	d.w, d.h = m.Cols(), m.Rows()
	d.mu.Unlock()
	return nil
}

func (d *slowDetector) Run() error {
	if d.block != nil {
		<-d.block
	}
	time.Sleep(d.delay) // the model's time: the stimulus, no test waits on it
	return nil
}

func (d *slowDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	d.mu.Lock()
	d.n++
	score := float32(0.3)
	if d.n%2 == 0 {
		score = 0.9
	}
	d.mu.Unlock()
	return append(out, model.Detection{ClassID: 0, Label: "thing", Score: score, Box: [4]float32{10, 10, float32(w) / 2, float32(h) / 2}})
}

type recorder struct {
	mu   sync.Mutex
	msgs []pipeline.Message
}

func (r *recorder) Publish(m *pipeline.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *m
	c.Detections = append([]model.Detection(nil), m.Detections...)
	r.msgs = append(r.msgs, c)
	return nil
}

func (r *recorder) snapshot() []pipeline.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pipeline.Message(nil), r.msgs...)
}

func clip(t *testing.T) string {
	return filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
}

func fileSource(t *testing.T, name string, pace string) *camera.Source {
	t.Helper()
	return newSource(t, name, clip(t), func(c *camera.Config) { c.Loop, c.Pace = true, pace })
}

// newSource builds a camera source of url from the camera defaults changed by mod.
func newSource(t *testing.T, name, url string, mod func(*camera.Config)) *camera.Source {
	t.Helper()
	cfg := camera.DefaultConfig()
	cfg.Name, cfg.URL = name, url
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := camera.NewSource(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, limit, what, cond)
}

// A model slower than the camera never builds a queue: the frames it cannot take are
// replaced in the hand-off and counted, messages follow the policy, and every frame goes back.
func TestLatestFrameHandOffAndPolicy(t *testing.T) {
	det := &slowDetector{delay: 40 * time.Millisecond}
	rec := &recorder{}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det), pipeline.OneFrame(det)}, rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	src := fileSource(t, "cam", camera.PaceFast)
	err := p.Update([]pipeline.Camera{{Name: "cam", Key: "1", Source: src,
		Policy: pipeline.Policy{Mode: pipeline.PolicyDetections, MinScore: 0.5}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "10 messages", 20*time.Second, func() bool { return len(rec.snapshot()) >= 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	st := p.Stats()
	cs := st.Cameras[0]
	if cs.Dropped == 0 {
		t.Errorf("a 40 ms model on an as-fast-as-possible file dropped no frames: %+v", cs)
	}
	if cs.Processed < 20 {
		t.Errorf("processed %d frames, want ≥ 20 (10 messages at every other frame)", cs.Processed)
	}
	msgs := rec.snapshot()
	var last uint64
	for i, m := range msgs {
		if len(m.Detections) != 1 || m.Detections[0].Score < 0.5 {
			t.Fatalf("message %d carries %v: the min_score filter let a 0.3 detection through", i, m.Detections)
		}
		if m.Width != 320 || m.Height != 240 || m.Camera != "cam" {
			t.Fatalf("message %d: %dx%d from %q, want 320x240 from cam", i, m.Width, m.Height, m.Camera)
		}
		if m.Frame <= last {
			t.Fatalf("message %d: frame %d after %d: frame numbers must increase", i, m.Frame, last)
		}
		last = m.Frame
		if m.Latency.Infer < 40*time.Millisecond {
			t.Fatalf("message %d: infer latency %s, the detector sleeps 40ms", i, m.Latency.Infer)
		}
	}
	if gaps := last - uint64(len(msgs)); gaps == 0 {
		t.Errorf("frame numbers show no gaps although frames were dropped")
	}
	if st.Latency["infer"].P50 < 40 {
		t.Errorf("infer p50 %.1f ms, want ≥ 40", st.Latency["infer"].P50)
	}
}

// A stuck inference stops counting as progress once it exceeds the limit, and the worker
// finishes the frame in flight before Run returns.
func TestProgressingAndSnapshot(t *testing.T) {
	det := &slowDetector{block: make(chan struct{})}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det), pipeline.OneFrame(det)}, &recorder{}, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Update([]pipeline.Camera{{Name: "cam", Key: "1", Source: fileSource(t, "cam", camera.PaceRealtime),
		Policy: pipeline.Policy{Mode: pipeline.PolicyEvery}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the worker to block in Infer", 10*time.Second, func() bool { return !p.Progressing(200 * time.Millisecond) })
	if !p.Progressing(time.Hour) {
		t.Fatal("Progressing(1h) is false while the frame has been in flight for well under an hour")
	}
	if jpg, err := p.Snapshot("cam"); err != nil || jpg != nil {
		t.Fatalf("snapshot before any processed frame: %d bytes, %v; want nil, nil", len(jpg), err)
	}
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while a frame was still in inference")
	case <-time.After(100 * time.Millisecond): // a look for what must not happen, not a wait
	}
	close(det.block) // the stuck inference ends; later frames pass straight through
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := p.Stats().Cameras[0].Processed; n != 1 {
		t.Fatalf("processed %d frames; want exactly the one in flight at shutdown", n)
	}
	// Run released every frame it held, the snapshot frame included.
	if jpg, err := p.Snapshot("cam"); err != nil || jpg != nil {
		t.Fatalf("snapshot after Run: %d bytes, %v; want nil, nil (frames released)", len(jpg), err)
	}
	if _, err := p.Snapshot("nope"); err == nil {
		t.Fatal("snapshot of an unknown camera: want an error")
	}
}

// Snapshot returns the last processed frame as a decodable JPEG of the frame's size.
func TestSnapshotJPEG(t *testing.T) {
	det := &slowDetector{}
	rec := &recorder{}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det), pipeline.OneFrame(det)}, rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Update([]pipeline.Camera{{Name: "cam", Key: "1", Source: fileSource(t, "cam", camera.PaceRealtime),
		Policy: pipeline.Policy{Mode: pipeline.PolicyEvery}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "a message", 10*time.Second, func() bool { return len(rec.snapshot()) > 0 })
	jpg, err := p.Snapshot("cam")
	if err != nil || len(jpg) == 0 {
		t.Fatalf("snapshot: %d bytes, %v", len(jpg), err)
	}
	if !bytes.HasPrefix(jpg, []byte{0xff, 0xd8}) {
		t.Fatal("snapshot is not a JPEG")
	}
	img, err := gocv.IMDecode(jpg, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := img.Size(); got[0] != 240 || got[1] != 320 {
		t.Fatalf("snapshot is %v, want 240x320", got)
	}
	// The drawn box is green: the pixel on its left edge.
	px := img.GetVecbAt(50, 10)
	if px[1] < 200 || px[0] > 80 || px[2] > 80 {
		t.Errorf("pixel on the box edge is BGR %v, want green", px)
	}
	cancel()
	<-done
}

// Update restarts only the cameras whose key changed.
func TestUpdateKeepsUnchangedCameras(t *testing.T) {
	det := &slowDetector{delay: 5 * time.Millisecond}
	rec := &recorder{}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det), pipeline.OneFrame(det)}, rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a, b := fileSource(t, "a", camera.PaceRealtime), fileSource(t, "b", camera.PaceRealtime)
	pol := pipeline.Policy{Mode: pipeline.PolicyEvery}
	if err := p.Update([]pipeline.Camera{{Name: "a", Key: "1", Source: a, Policy: pol}, {Name: "b", Key: "1", Source: b, Policy: pol}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "both cameras streaming", 10*time.Second, func() bool {
		return a.State().Phase == camera.PhaseStreaming && b.State().Phase == camera.PhaseStreaming
	})
	framesA := a.State().Frames
	b2 := fileSource(t, "b", camera.PaceRealtime)
	if err := p.Update([]pipeline.Camera{{Name: "a", Key: "1", Source: a, Policy: pol}, {Name: "b", Key: "2", Source: b2, Policy: pol}}); err != nil {
		t.Fatal(err)
	}
	if got := b.State().Phase; got != camera.PhaseStopped {
		t.Errorf("changed camera b: old source is %s, want stopped", got)
	}
	waitFor(t, "new b streaming", 10*time.Second, func() bool { return b2.State().Phase == camera.PhaseStreaming })
	if st := a.State(); st.Phase != camera.PhaseStreaming || st.Frames < framesA || st.Reconnects != 0 {
		t.Errorf("unchanged camera a was disturbed: %+v", st)
	}
	if err := p.Update([]pipeline.Camera{{Name: "a", Key: "1", Source: a, Policy: pol}, {Name: "a", Key: "1", Source: a, Policy: pol}}); err == nil {
		t.Error("a duplicate camera name: want an error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.State().Phase != camera.PhaseStopped || b2.State().Phase != camera.PhaseStopped {
		t.Error("sources still running after Run returned")
	}
}

// overlapDetector counts Preprocess calls that ran while another slot was inside Run. Run
// stays inside until such a Preprocess happens or wait has passed: with two slots the
// pipeline must preprocess the next frame meanwhile, with one it must not.
type overlapDetector struct {
	running    atomic.Int32
	overlapped atomic.Int32
	runs       atomic.Int32
	during     chan struct{} // a Preprocess ran during Run
	wait       time.Duration
}

func (d *overlapDetector) Preprocess(gocv.Mat) error {
	if d.running.Load() > 0 {
		d.overlapped.Add(1)
		select {
		case d.during <- struct{}{}:
		default:
		}
	}
	return nil
}

func (d *overlapDetector) Run() error {
	d.running.Add(1)
	select {
	case <-d.during:
	case <-time.After(d.wait):
	}
	d.running.Add(-1)
	d.runs.Add(1)
	return nil
}

func (d *overlapDetector) Decode(w, h int, out []model.Detection) []model.Detection { return out }

// With two slots the next frame is preprocessed while the model runs; with one they take turns.
func TestPreprocessOverlapsInference(t *testing.T) {
	for _, n := range []int{1, 2} {
		// Two slots: wait long for the overlap that must come. One slot: a shorter deadline
		// for the overlap that must not.
		det := &overlapDetector{during: make(chan struct{}, 1), wait: 10 * time.Second}
		if n == 1 {
			det.wait = 100 * time.Millisecond
		}
		slots := make([]pipeline.Slot, n)
		for i := range slots {
			slots[i] = pipeline.OneFrame(det)
		}
		p := pipeline.New(slots, &recorder{}, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := p.Update([]pipeline.Camera{{Name: "cam", Key: "1", Source: fileSource(t, "cam", camera.PaceRealtime),
			Policy: pipeline.Policy{Mode: pipeline.PolicyEvery}}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		waitFor(t, "8 inferences", 20*time.Second, func() bool { return det.runs.Load() >= 8 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		switch got := det.overlapped.Load(); {
		case n == 1 && got != 0:
			t.Errorf("one slot: %d preprocessings overlapped an inference", got)
		case n == 2 && got == 0:
			t.Errorf("two slots: no preprocessing overlapped an inference in %d runs", det.runs.Load())
		}
	}
}
