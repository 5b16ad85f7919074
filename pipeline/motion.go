package pipeline

import (
	"fmt"
	"image"
	"image/color"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/motion"
)

// gate decides, for a camera in detect mode motion, which frames reach the model. It runs on
// the camera's capture goroutine, in the sink, before the hand-off: every frame passes through
// the motion detector (the background average needs them all), and the model's worker never
// waits for it. It costs about 2 ms of one core per 1280×720 frame (motion's benchmark) and
// allocates nothing, which the sink's contract (return quickly) allows.
type gate struct {
	det      *motion.Detector
	keyframe time.Duration
	lastRun  time.Time // capture time of the last frame let through; capture goroutine only

	skipRun int // frames turned away since the last one let through; capture goroutine only

	mu     sync.Mutex
	frames map[*camera.Frame]*gated // what the gate saw of the frames it let through
	closed bool
}

// gated is what the gate knows of a frame it let through: its motion boxes (for the live
// view) and how many frames it turned away just before it (for track.Scene.Age).
type gated struct {
	boxes   []image.Rectangle
	skipped int
}

// maxGateFrames bounds gate.boxes: a source fills frames from a pool of camera.FramePoolSize,
// so more entries than this mean frames of a pool that is gone.
const maxGateFrames = 4 * camera.FramePoolSize

func newGate(c Camera) *gate {
	if c.Detect.Mode != DetectMotion {
		return nil
	}
	return &gate{det: motion.New(c.Motion), keyframe: c.Detect.KeyframeInterval, frames: map[*camera.Frame]*gated{}}
}

// admit reports whether frame f goes to the model. A frame it turns away is released and
// counted as skipped. It runs on the capture goroutine only.
func (cs *camState) admit(f *camera.Frame) bool {
	g := cs.gate
	if g == nil {
		return true
	}
	res, err := g.det.Detect(f.Mat, f.Time)
	if err != nil {
		// The model gets the frame and reports what is wrong with it (model errors, /healthz).
		cs.moving.Store(false)
		return true
	}
	cs.moving.Store(res.Moving())
	since := f.Time.Sub(g.lastRun)
	// A recalibration (lights, exposure: a new picture) lets its frame through once: the new
	// picture may show what the old one hid.
	due := res.Moving() || res.Recalibrated || cs.needFrames.Load() || g.lastRun.IsZero() ||
		since >= g.keyframe || since < 0
	if !due {
		cs.skipped.Add(1)
		g.skipRun++
		f.Release()
		return false
	}
	g.lastRun = f.Time
	g.mu.Lock()
	rec := g.frames[f]
	if rec == nil {
		if len(g.frames) >= maxGateFrames {
			clear(g.frames)
		}
		rec = &gated{}
		g.frames[f] = rec
	}
	rec.boxes = append(rec.boxes[:0], res.Boxes...)
	rec.skipped, g.skipRun = g.skipRun, 0
	g.mu.Unlock()
	return true
}

// skippedBefore returns how many frames the gate turned away just before f.
func (g *gate) skippedBefore(f *camera.Frame) int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if rec := g.frames[f]; rec != nil {
		return rec.skipped
	}
	return 0
}

// motionOf appends the motion boxes of a frame that admit let through to dst.
func (g *gate) motionOf(f *camera.Frame, dst []image.Rectangle) []image.Rectangle {
	if g == nil {
		return dst
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if rec := g.frames[f]; rec != nil {
		dst = append(dst, rec.boxes...)
	}
	return dst
}

// close frees the motion detector once the capture goroutine no longer runs; a second call
// does nothing.
func (g *gate) close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		_ = g.det.Close()
	}
}

// gateStats fills in the camera's detect mode, detection rate and motion counters.
func (cs *camState) gateStats(c *CameraStats) {
	c.Mode = DetectAlways
	if cs.cam.Detect.Mode == DetectMotion {
		c.Mode = DetectMotion
	}
	c.DetectRate = cs.runs.rate(time.Now(), cs.started)
	c.Skipped = cs.skipped.Load()
	c.Moving = cs.moving.Load()
}

// drawMotion draws motion boxes in magenta, a colour of their own (detections are green,
// zones yellow).
func drawMotion(img *gocv.Mat, boxes []image.Rectangle) error {
	magenta := color.RGBA{R: 255, B: 255, A: 255}
	for _, b := range boxes {
		if err := gocv.Rectangle(img, b, magenta, 2); err != nil {
			return fmt.Errorf("draw motion box: %w", err)
		}
	}
	return nil
}

// rateWindow is the time over which a camera's detections per second are counted.
const rateWindow = 10 * time.Second

// runLog remembers when the model last ran on a camera's frames, for its detections per
// second over rateWindow. The worker adds; Stats reads.
type runLog struct {
	mu    sync.Mutex
	times [64]int64 // unix ns, a ring
	n     int       // runs added
}

func (r *runLog) add(now time.Time) {
	r.mu.Lock()
	r.times[r.n%len(r.times)] = now.UnixNano()
	r.n++
	r.mu.Unlock()
}

// rate returns the runs per second over the rateWindow before now; a camera started less
// than rateWindow ago is measured over its lifetime.
func (r *runLog) rate(now, started time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	from := now.Add(-rateWindow)
	span := rateWindow
	if started.After(from) {
		from, span = started, now.Sub(started)
	}
	count, oldest := 0, now.UnixNano()
	for i := range min(r.n, len(r.times)) {
		if t := r.times[i]; t > from.UnixNano() {
			count++
			oldest = min(oldest, t)
		}
	}
	if count == len(r.times) {
		// The ring holds only the window's latest runs: measure over what it holds.
		span = now.Sub(time.Unix(0, oldest))
	}
	if span <= 0 {
		return 0
	}
	return float64(count) / span.Seconds()
}
