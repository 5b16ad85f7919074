package pipeline_test

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/motion"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/track"
)

// clockT0 is the capture time of a clockSource's first frame; frame i is clockStep later each.
var clockT0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

const clockStep = 100 * time.Millisecond // 10 fps

// clockSource is a camera made in the test that drives the pipeline with a fake clock: frame i
// carries the capture time clockT0 + i·clockStep, and the source hands over the next frame
// only when the pipeline has accounted for the last one (processed or skipped), so no frame
// is replaced in the hand-off and every decision is the gate's. A 30 s clip runs in well under
// a second, and nothing waits on wall-clock time.
type clockSource struct {
	name    string
	n       int
	draw    func(i int, m *gocv.Mat) // paints frame i
	settled func(frames int) bool    // whether the pipeline has accounted for this many frames
	mu      sync.Mutex
	sent    int
	err     error
}

func (s *clockSource) Run(ctx context.Context, sink func(*camera.Frame)) error {
	pool := camera.NewFramePool(camera.FramePoolSize, s.name)
	defer pool.Close()
	for i := range s.n {
		f := pool.Get()
		if f == nil {
			return s.fail(fmt.Errorf("frame %d: the pipeline holds every pooled frame", i))
		}
		s.draw(i, &f.Mat)
		f.Seq, f.Time = uint64(i+1), clockT0.Add(time.Duration(i)*clockStep)
		sink(f)
		if !testenv.Poll(10*time.Second, time.Millisecond, func() bool { return ctx.Err() != nil || s.settled(i+1) }) {
			return s.fail(fmt.Errorf("frame %d: not processed or skipped within 10 s", i))
		}
		if ctx.Err() != nil {
			return nil
		}
		s.mu.Lock()
		s.sent = i + 1
		s.mu.Unlock()
	}
	return nil
}

func (s *clockSource) fail(err error) error {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	return err
}

// done reports whether every frame was accounted for; it fails the test on a source error.
func (s *clockSource) done(t *testing.T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.sent == s.n
}

func (s *clockSource) State() camera.State { return camera.State{Phase: camera.PhaseStreaming} }

// background paints a still textured 640×360 picture; square (empty: none) is drawn white.
func background(m *gocv.Mat, square image.Rectangle) {
	if m.Empty() {
		*m = gocv.NewMatWithSize(360, 640, gocv.MatTypeCV8UC3)
	}
	pix, _ := m.DataPtrUint8()
	for y := range 360 {
		for x := range 640 {
			i := 3 * (y*640 + x)
			pix[i], pix[i+1], pix[i+2] = uint8(40+x/8), uint8(60+y/6), uint8(50+((x/20+y/20)%2)*60)
		}
	}
	if !square.Empty() {
		gocv.Rectangle(m, square, color.RGBA{255, 255, 255, 0}, -1)
	}
}

// fixedDetector stands in for the model: every run reports the same detections.
type fixedDetector struct {
	mu   sync.Mutex
	dets []model.Detection
	runs int
}

func (d *fixedDetector) Preprocess(gocv.Mat) error { return nil }
func (d *fixedDetector) Run() error {
	d.mu.Lock()
	d.runs++
	d.mu.Unlock()
	return nil
}

func (d *fixedDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(out, d.dets...)
}

// gated is a pipeline with one camera of a clockSource, publishing every processed frame.
type gated struct {
	p    *pipeline.Pipeline
	rec  *stateRecorder
	src  *clockSource
	reg  *prometheus.Registry
	stop func()
}

// stateRecorder keeps the processed frames' indexes (from their capture times) and the
// events with their stationary flag.
type stateRecorder struct {
	mu     sync.Mutex
	frames []int
	dets   [][]model.Detection
	events []string // "<frame> <type> stationary=<bool>"
}

func frameIndex(t time.Time) int { return int(t.Sub(clockT0) / clockStep) }

func (r *stateRecorder) Publish(m *pipeline.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, frameIndex(m.Time))
	r.dets = append(r.dets, slices.Clone(m.Detections))
	return nil
}

func (r *stateRecorder) PublishTracked(t *pipeline.Tracked) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range t.Events {
		if t.Time.Before(clockT0.Add(time.Hour)) { // not the shutdown's end events
			r.events = append(r.events, fmt.Sprintf("%d %s stationary=%v", frameIndex(t.Time), e.Type, e.Stationary))
		}
	}
	return nil
}

func (r *stateRecorder) processed() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.frames)
}

func startGated(t *testing.T, det pipeline.FrameSlot, cam pipeline.Camera, n int, draw func(int, *gocv.Mat)) *gated {
	t.Helper()
	g := &gated{rec: &stateRecorder{}, reg: prometheus.NewRegistry()}
	g.p = pipeline.New([]pipeline.Slot{pipeline.OneFrame(det)}, g.rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.reg.MustRegister(g.p.Collector())
	g.src = g.newSource(cam.Name, n, draw)
	cam.Source = g.src
	cam.Policy = pipeline.Policy{Mode: pipeline.PolicyEvery}
	if err := g.p.Update([]pipeline.Camera{cam}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.p.Run(ctx) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

func (g *gated) newSource(name string, n int, draw func(int, *gocv.Mat)) *clockSource {
	return &clockSource{name: name, n: n, draw: draw, settled: func(frames int) bool {
		for _, c := range g.p.Stats().Cameras {
			if c.Name == name {
				return c.Processed+c.Skipped >= uint64(frames)
			}
		}
		return false
	}}
}

func (g *gated) wait(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, "every frame of the clip processed or skipped", func() bool { return g.src.done(t) })
}

// metric returns the value of a metric with the given labels from the pipeline's collector.
func (g *gated) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not collected", name, labels)
	return 0
}

func motionCamera(name string, keyframe time.Duration) pipeline.Camera {
	return pipeline.Camera{Name: name, Key: name, Motion: motion.DefaultConfig(),
		Detect: pipeline.Detect{Mode: pipeline.DetectMotion, KeyframeInterval: keyframe}}
}

// A still clip still gets a detection every keyframe_interval: 30 s at 10 fps, keyframes every
// 10 s: the model runs on frames 0, 100 and 200 and skips the other 297, counted.
func TestMotionModeStillClipGetsKeyframes(t *testing.T) {
	det := &fixedDetector{}
	g := startGated(t, det, motionCamera("still", 10*time.Second), 300, func(_ int, m *gocv.Mat) { background(m, image.Rectangle{}) })
	g.wait(t)
	if got := g.rec.processed(); !slices.Equal(got, []int{0, 100, 200}) {
		t.Fatalf("the model ran on frames %v, want [0 100 200]", got)
	}
	st := g.p.Stats().Cameras[0]
	if st.Skipped != 297 || st.Processed != 3 || st.Moving || st.Mode != pipeline.DetectMotion {
		t.Errorf("stats %+v, want 297 skipped, 3 processed, not moving, mode motion", st)
	}
	if v := g.metric(t, "stardetr_frames_skipped_total", map[string]string{"camera": "still", "reason": "no_motion"}); v != 297 {
		t.Errorf("stardetr_frames_skipped_total %v, want 297", v)
	}
	if v := g.metric(t, "stardetr_motion_active", map[string]string{"camera": "still"}); v != 0 {
		t.Errorf("stardetr_motion_active %v, want 0", v)
	}
}

// Frames with motion all reach the model, the still ones before them do not, and the live
// view's snapshot can show the motion boxes of the frame it shows.
func TestMotionModeRunsOnMotion(t *testing.T) {
	det := &fixedDetector{}
	// Still for 10 s, then a square moving right for 3 s, which the clip ends on.
	square := func(i int) image.Rectangle {
		if i < 100 {
			return image.Rectangle{}
		}
		return image.Rect(100+10*(i-100), 150, 180+10*(i-100), 230)
	}
	g := startGated(t, det, motionCamera("moving", 20*time.Second), 130, func(i int, m *gocv.Mat) { background(m, square(i)) })
	g.wait(t)
	got := g.rec.processed()
	want := []int{0}
	for i := 100; i < 130; i++ {
		want = append(want, i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the model ran on frames %v, want %v: frame 0 and every moving frame", got, want)
	}
	if v := g.metric(t, "stardetr_motion_active", map[string]string{"camera": "moving"}); v != 1 {
		t.Errorf("stardetr_motion_active %v after a moving frame, want 1", v)
	}
	if st := g.p.Stats().Cameras[0]; st.Skipped != 99 {
		t.Errorf("skipped %d, want 99", st.Skipped)
	}
	plain, err := g.p.Snapshot("moving")
	if err != nil {
		t.Fatal(err)
	}
	withMotion, err := g.p.SnapshotWithMotion("moving")
	if err != nil {
		t.Fatal(err)
	}
	// The two pictures differ by the motion box's outline only, and the box holds the last
	// frame's square (x 390..470, y 150..230).
	drawn, n := outlineOf(t, plain, withMotion)
	t.Logf("motion outline: %d pixels within %v", n, drawn)
	if sq := square(129); n < 200 || !sq.Inset(4).In(drawn) {
		t.Errorf("motion boxes drawn: %d pixels differ within %v; want the outline of a box around %v", n, drawn, sq)
	}
}

// outlineOf decodes two JPEGs of one frame and returns the bounds and number of the pixels
// that differ clearly between them.
func outlineOf(t *testing.T, a, b []byte) (image.Rectangle, int) {
	t.Helper()
	ma, err := gocv.IMDecode(a, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	pa, _ := ma.DataPtrUint8()
	pb, _ := mb.DataPtrUint8()
	w := ma.Cols()
	var r image.Rectangle
	n := 0
	for i := 0; i+2 < len(pa) && i+2 < len(pb); i += 3 {
		d := 0
		for k := range 3 {
			d += max(int(pa[i+k])-int(pb[i+k]), int(pb[i+k])-int(pa[i+k]))
		}
		if d > 90 {
			x, y := (i/3)%w, (i/3)/w
			r = r.Union(image.Rect(x, y, x+1, y+1))
			n++
		}
	}
	return r, n
}

// An object found without motion (at a keyframe) gets the frames its track needs: the model
// runs on every frame while the track is tentative or moving, the track is confirmed, turns
// stationary (one update saying so), and from then on only keyframes run, the track kept.
func TestMotionModeTracksAndStationary(t *testing.T) {
	det := &fixedDetector{dets: []model.Detection{{ClassID: 0, Label: "car", Score: 0.9, Box: [4]float32{200, 150, 400, 250}}}}
	cam := motionCamera("lot", 10*time.Second)
	tc := track.DefaultConfig()
	tc.Enabled, tc.MinHits, tc.UpdateInterval = true, 3, 5*time.Second
	tc.Stationary.After = 2 * time.Second
	cam.Scene = track.NewScene(tc, nil, []string{"car"})
	g := startGated(t, det, cam, 250, func(_ int, m *gocv.Mat) { background(m, image.Rectangle{}) })
	g.wait(t)
	// Frames 0..20: tentative, then confirmed at 2 (min_hits 3) and moving until it has been
	// put for 2 s (frame 20: stationary). Then keyframes 10 s after the last run: 120, 220.
	var want []int
	for i := 0; i <= 20; i++ {
		want = append(want, i)
	}
	want = append(want, 120, 220)
	if got := g.rec.processed(); !slices.Equal(got, want) {
		t.Fatalf("the model ran on frames %v, want %v", got, want)
	}
	g.stop()
	g.rec.mu.Lock()
	events := slices.Clone(g.rec.events)
	g.rec.mu.Unlock()
	if w := []string{"2 new stationary=false", "20 update stationary=true"}; !slices.Equal(events, w) {
		t.Fatalf("events %q, want %q", events, w)
	}
}

// Filters drop detections by label before tracking and publishing: score, and area as a
// fraction of the frame (640×360 = 230,400 px).
func TestObjectFilters(t *testing.T) {
	det := &fixedDetector{dets: []model.Detection{
		{ClassID: 0, Label: "person", Score: 0.9, Box: [4]float32{0, 0, 100, 200}},   // kept
		{ClassID: 0, Label: "person", Score: 0.4, Box: [4]float32{0, 0, 100, 200}},   // score < 0.5
		{ClassID: 1, Label: "car", Score: 0.9, Box: [4]float32{0, 0, 20, 20}},        // 0.0017 < 0.01
		{ClassID: 1, Label: "car", Score: 0.9, Box: [4]float32{0, 0, 200, 100}},      // 0.087: kept
		{ClassID: 1, Label: "car", Score: 0.9, Box: [4]float32{0, 0, 600, 300}},      // 0.78 > 0.5
		{ClassID: 2, Label: "dog", Score: 0.2, Box: [4]float32{0, 0, 10, 10}},        // no filter: kept
		{ClassID: 0, Label: "person", Score: 0.5, Box: [4]float32{10, 10, 110, 210}}, // = min_score: kept
	}}
	cam := pipeline.Camera{Name: "f", Key: "f", Objects: pipeline.Objects{Filters: map[string]pipeline.ObjectFilter{
		"person": {MinScore: 0.5},
		"car":    {MinArea: 0.01, MaxArea: 0.5},
	}}}
	if err := cam.Objects.Validate(); err != nil {
		t.Fatal(err)
	}
	g := startGated(t, det, cam, 3, func(_ int, m *gocv.Mat) { background(m, image.Rectangle{}) })
	g.wait(t)
	g.rec.mu.Lock()
	defer g.rec.mu.Unlock()
	if len(g.rec.dets) != 3 {
		t.Fatalf("%d messages, want 3 (mode always: every frame)", len(g.rec.dets))
	}
	for i, dets := range g.rec.dets {
		var got []string
		for _, d := range dets {
			got = append(got, fmt.Sprintf("%s %.1f %.0f", d.Label, d.Score, d.Box[2]))
		}
		want := []string{"person 0.9 100", "car 0.9 200", "dog 0.2 10", "person 0.5 110"}
		if !slices.Equal(got, want) {
			t.Errorf("message %d: detections %q, want %q", i, got, want)
		}
	}
}

// Update with a camera whose detect mode changed (what a SIGHUP reload does) restarts it in
// the new mode: always runs every frame, motion then skips the still ones.
func TestDetectModeChangeOnUpdate(t *testing.T) {
	det := &fixedDetector{}
	still := func(_ int, m *gocv.Mat) { background(m, image.Rectangle{}) }
	cam := pipeline.Camera{Name: "cam", Key: "always"}
	g := startGated(t, det, cam, 20, still)
	g.wait(t)
	if st := g.p.Stats().Cameras[0]; st.Processed != 20 || st.Skipped != 0 || st.Mode != pipeline.DetectAlways {
		t.Fatalf("always: %+v, want 20 processed, none skipped", st)
	}
	cam = motionCamera("cam", 10*time.Second)
	cam.Key = "motion"
	cam.Policy = pipeline.Policy{Mode: pipeline.PolicyEvery}
	g.src = g.newSource("cam", 50, still)
	cam.Source = g.src
	if err := g.p.Update([]pipeline.Camera{cam}); err != nil {
		t.Fatal(err)
	}
	g.wait(t)
	if st := g.p.Stats().Cameras[0]; st.Processed != 1 || st.Skipped != 49 || st.Mode != pipeline.DetectMotion {
		t.Fatalf("after the change to motion: %+v, want 1 processed (the first frame), 49 skipped", st)
	}
	// And back: every frame again.
	cam = pipeline.Camera{Name: "cam", Key: "always again", Policy: pipeline.Policy{Mode: pipeline.PolicyEvery}}
	g.src = g.newSource("cam", 10, still)
	cam.Source = g.src
	if err := g.p.Update([]pipeline.Camera{cam}); err != nil {
		t.Fatal(err)
	}
	g.wait(t)
	if st := g.p.Stats().Cameras[0]; st.Processed != 10 || st.Skipped != 0 {
		t.Fatalf("after the change back to always: %+v, want 10 processed", st)
	}
}

func TestDetectAndObjectsValidate(t *testing.T) {
	d := pipeline.DefaultDetect()
	if err := d.Validate(); err != nil || d.Mode != pipeline.DetectAlways || d.KeyframeInterval != 10*time.Second {
		t.Fatalf("defaults %+v: %v", d, err)
	}
	for _, c := range []struct {
		d     pipeline.Detect
		parts []string
	}{
		{pipeline.Detect{Mode: "sometimes", KeyframeInterval: time.Second}, []string{"mode:", `"sometimes"`, `"always"`, `"motion"`}},
		{pipeline.Detect{Mode: "motion", KeyframeInterval: 0}, []string{"keyframe_interval:", "0s", "above 0"}},
		{pipeline.Detect{Mode: "motion", KeyframeInterval: -time.Second}, []string{"keyframe_interval:", "-1s"}},
	} {
		testenv.WantError(t, c.d.Validate(), c.parts...)
	}
	for _, c := range []struct {
		f     pipeline.ObjectFilter
		parts []string
	}{
		{pipeline.ObjectFilter{MinArea: -0.1}, []string{"filters.car.min_area:", "0 to 1"}},
		{pipeline.ObjectFilter{MaxArea: 2}, []string{"filters.car.max_area:", "0 to 1"}},
		{pipeline.ObjectFilter{MinScore: 1.5}, []string{"filters.car.min_score:", "0 to 1"}},
		{pipeline.ObjectFilter{MinArea: 0.5, MaxArea: 0.1}, []string{"filters.car.min_area:", "above max_area"}},
	} {
		o := pipeline.Objects{Filters: map[string]pipeline.ObjectFilter{"car": c.f}}
		testenv.WantError(t, o.Validate(), c.parts...)
	}
	o := pipeline.Objects{Filters: map[string]pipeline.ObjectFilter{"car": {}, "unicorn": {MinScore: 0.5}}}
	testenv.WantError(t, o.CheckLabels([]string{"person", "car"}), "filters.unicorn:", "not a class of the model", "[person car]")
}

// whiteDetector stands in for the model: it reports the bounding box of the frame's white
// pixels (the test's square) as one "thing".
type whiteDetector struct {
	mu    sync.Mutex
	found bool
	box   [4]float32
}

func (d *whiteDetector) Preprocess(m gocv.Mat) error {
	pix, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	w := m.Cols()
	x1, y1, x2, y2 := w, m.Rows(), -1, -1
	for i := 0; i+2 < len(pix); i += 3 {
		if pix[i] > 250 && pix[i+1] > 250 && pix[i+2] > 250 {
			x, y := (i/3)%w, (i/3)/w
			x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
		}
	}
	d.mu.Lock()
	d.found, d.box = x2 > x1, [4]float32{float32(x1), float32(y1), float32(x2 + 1), float32(y2 + 1)}
	d.mu.Unlock()
	return nil
}

func (d *whiteDetector) Run() error { return nil }

func (d *whiteDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.found {
		return out
	}
	return append(out, model.Detection{Label: "thing", Score: 0.9, Box: d.box})
}

// An object crosses the picture and leaves: the model runs while it moves, not for max_age
// frames of an empty scene after it: the frames skipped without motion count as its misses,
// and the next keyframe ends it.
func TestMotionModeEndsLeftObjectAtKeyframe(t *testing.T) {
	cam := motionCamera("yard", 10*time.Second)
	tc := track.DefaultConfig()
	tc.Enabled, tc.UpdateInterval = true, 0
	cam.Scene = track.NewScene(tc, nil, []string{"thing"})
	square := func(i int) image.Rectangle {
		if i < 50 || i >= 80 {
			return image.Rectangle{}
		}
		return image.Rect(20*(i-50), 150, 20*(i-50)+60, 230)
	}
	g := startGated(t, &whiteDetector{}, cam, 300, func(i int, m *gocv.Mat) { background(m, square(i)) })
	g.wait(t)
	runs := g.rec.processed()
	g.rec.mu.Lock()
	events := slices.Clone(g.rec.events)
	g.rec.mu.Unlock()
	t.Logf("runs %v; events %q", runs, events)
	// The square shows on frames 50..79; the motion it leaves fades within ~1 s.
	last := 0
	for _, f := range runs {
		if f > 1 && f < 50 {
			t.Fatalf("the model ran on frame %d, before anything moved", f)
		}
		if f >= 50 && f < 100 {
			last = f
		}
	}
	if last < 80 || last > 95 {
		t.Fatalf("the last run after the object left was frame %d; want it within the motion's fade (80..95)", last)
	}
	if !slices.Contains(runs, last+100) {
		t.Errorf("no keyframe at frame %d, 10 s after the last run", last+100)
	}
	if len(events) != 2 || !strings.HasPrefix(events[0], "52 new") || events[1] != fmt.Sprintf("%d end stationary=false", last+100) {
		t.Errorf("events %q, want new at frame 52 and end at the keyframe, frame %d", events, last+100)
	}
}
