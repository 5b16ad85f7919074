package motion_test

import (
	"errors"
	"image"
	"image/color"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/motion"
)

// scene draws generated 1280×720 BGR frames: a fixed textured background (gradients and
// blocks, so that resizing and thresholding see structure, not a flat field), sensor-like
// noise that differs per frame, and optionally a square and a brightness offset.
type scene struct {
	t     testing.TB
	bg    gocv.Mat
	frame gocv.Mat
	// noise[k] is a pair of images added and subtracted: frame k's noise is noise[k%4].
	noise [4][2]gocv.Mat
	n     int
	now   time.Time
}

const fw, fh = 1280, 720

func newScene(t testing.TB) *scene {
	s := &scene{t: t, bg: gocv.NewMatWithSize(fh, fw, gocv.MatTypeCV8UC3), frame: gocv.NewMat(),
		now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	t.Cleanup(func() {
		s.bg.Close()
		s.frame.Close()
		for _, p := range s.noise {
			p[0].Close()
			p[1].Close()
		}
	})
	pix, err := s.bg.DataPtrUint8()
	if err != nil {
		t.Fatal(err)
	}
	for y := range fh {
		for x := range fw {
			i := 3 * (y*fw + x)
			pix[i] = uint8(40 + x*120/fw)
			pix[i+1] = uint8(60 + y*100/fh)
			pix[i+2] = uint8(50 + ((x/40+y/40)%2)*60)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range s.noise {
		for j := range s.noise[k] {
			m := gocv.NewMatWithSize(fh, fw, gocv.MatTypeCV8UC3)
			b, err := m.DataPtrUint8()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(b); i += 8 {
				u := rng.Uint64()
				for q := range min(8, len(b)-i) {
					b[i+q] = uint8(u >> (8 * q) & 3) // 0..3 up, 0..3 down: -3..+3
				}
			}
			s.noise[k][j] = m
		}
	}
	return s
}

// next returns the next frame, 100 ms after the last one: the background plus noise of -3..+3
// grey levels, the square (nil: none) filled white, everything brightened by offset.
func (s *scene) next(square *image.Rectangle, offset uint8) gocv.Mat {
	s.bg.CopyTo(&s.frame)
	if square != nil {
		if err := gocv.Rectangle(&s.frame, *square, color.RGBA{255, 255, 255, 0}, -1); err != nil {
			s.t.Fatal(err)
		}
	}
	nz := s.noise[s.n%len(s.noise)]
	s.n++
	if err := errors.Join(gocv.Add(s.frame, nz[0], &s.frame), gocv.Subtract(s.frame, nz[1], &s.frame)); err != nil {
		s.t.Fatal(err)
	}
	if offset > 0 {
		if err := s.frame.ConvertToWithParams(&s.frame, gocv.MatTypeCV8UC3, 1, float32(offset)); err != nil {
			s.t.Fatal(err)
		}
	}
	s.now = s.now.Add(100 * time.Millisecond)
	return s.frame
}

func detector(t testing.TB, cfg motion.Config) *motion.Detector {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := motion.New(cfg)
	t.Cleanup(func() { d.Close() })
	return d
}

func detect(t testing.TB, d *motion.Detector, s *scene, square *image.Rectangle, offset uint8) motion.Result {
	t.Helper()
	f := s.next(square, offset)
	r, err := d.Detect(f, s.now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	ia := float64(in.Dx() * in.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}

// A still, noisy picture has no motion; a square that appears is reported with its box, and
// while it moves its box contains it.
func TestStillThenMovingSquare(t *testing.T) {
	s := newScene(t)
	d := detector(t, motion.DefaultConfig())
	if r := detect(t, d, s, nil, 0); !r.Recalibrated || r.Moving() {
		t.Fatalf("first frame: %+v, want a recalibration without motion", r)
	}
	for i := range 30 {
		if r := detect(t, d, s, nil, 0); r.Moving() || r.Recalibrated {
			t.Fatalf("still frame %d: %+v, want no motion", i, r)
		}
	}
	sq := image.Rect(400, 300, 520, 420)
	r := detect(t, d, s, &sq, 0)
	if len(r.Boxes) != 1 {
		t.Fatalf("square appeared: boxes %v, want one", r.Boxes)
	}
	if v := iou(r.Boxes[0], sq); v < 0.7 {
		t.Errorf("square %v appeared: box %v, IoU %.2f, want ≥ 0.7", sq, r.Boxes[0], v)
	}
	for i := range 10 {
		sq = sq.Add(image.Pt(24, 0))
		r = detect(t, d, s, &sq, 0)
		if len(r.Boxes) != 1 || !sq.In(r.Boxes[0]) {
			t.Fatalf("moving square %v, step %d: boxes %v, want one containing it", sq, i, r.Boxes)
		}
		// The box trails the square (the background forgets its old places within ~1 s)
		// but never spans the frame.
		if b := r.Boxes[0]; b.Dx() > 3*sq.Dx() || b.Dy() > 2*sq.Dy() {
			t.Errorf("moving square %v, step %d: box %v is too large", sq, i, b)
		}
	}
	// It stops: after about a second the background holds it and the motion ends.
	moving := 0
	for range 30 {
		if detect(t, d, s, &sq, 0).Moving() {
			moving++
		}
	}
	if moving > 15 {
		t.Errorf("a square that stopped was still moving in %d of the next 30 frames (3 s)", moving)
	}
	if r := detect(t, d, s, &sq, 0); r.Moving() {
		t.Errorf("3 s after the square stopped: %+v, want no motion", r)
	}
}

// A brightness step over the whole frame (lights, auto-exposure) recalibrates instead of
// reporting motion, and the frames after it are still.
func TestBrightnessStepRecalibrates(t *testing.T) {
	s := newScene(t)
	d := detector(t, motion.DefaultConfig())
	for range 5 {
		detect(t, d, s, nil, 0)
	}
	r := detect(t, d, s, nil, 60)
	if !r.Recalibrated || r.Moving() {
		t.Fatalf("brightness +60 over the whole frame: %+v, want a recalibration, no motion", r)
	}
	for i := range 10 {
		if r := detect(t, d, s, nil, 60); r.Moving() || r.Recalibrated {
			t.Fatalf("frame %d after the step: %+v, want no motion", i, r)
		}
	}
	// Darker again, with a square: the step still wins, and the square shows next frame.
	sq := image.Rect(100, 100, 200, 200)
	if r := detect(t, d, s, nil, 0); !r.Recalibrated || r.Moving() {
		t.Fatalf("brightness back: %+v, want a recalibration", r)
	}
	if r := detect(t, d, s, &sq, 0); len(r.Boxes) != 1 || !sq.In(r.Boxes[0]) {
		t.Fatalf("square after the recalibration: %+v, want its box", r)
	}
}

// Motion inside a mask is ignored; the same motion outside it is reported.
func TestMaskedMotionIsIgnored(t *testing.T) {
	cfg := motion.DefaultConfig()
	// The left third of the frame, as a triangle and a quad that together cover it.
	cfg.Masks = [][][]float64{
		{{0, 0}, {1.0 / 3, 0}, {0, 1}},
		{{1.0 / 3, 0}, {1.0 / 3, 1}, {0, 1}},
	}
	s := newScene(t)
	d := detector(t, cfg)
	detect(t, d, s, nil, 0)
	sq := image.Rect(120, 200, 300, 400) // well inside x < 426
	for i := range 10 {
		sq = sq.Add(image.Pt(0, 20))
		if r := detect(t, d, s, &sq, 0); r.Moving() || r.Changed != 0 {
			t.Fatalf("square %v in the mask, step %d: %+v, want no motion", sq, i, r)
		}
	}
	out := image.Rect(700, 200, 880, 400)
	if r := detect(t, d, s, &out, 0); len(r.Boxes) != 1 || !out.In(r.Boxes[0]) {
		t.Fatalf("square %v outside the mask: %+v, want its box", out, r)
	}
	// A square across the mask's edge: its box stops at the edge.
	across := image.Rect(330, 500, 530, 600)
	d2 := detector(t, cfg)
	detect(t, d2, s, nil, 0)
	r := detect(t, d2, s, &across, 0)
	if len(r.Boxes) != 1 || r.Boxes[0].Min.X < 400 || r.Boxes[0].Max.X < 530 {
		t.Fatalf("square %v across the mask's edge at x=426: %+v, want one box from about x=426", across, r)
	}
}

// A change smaller than min_area is noise, not motion.
func TestSmallChangeIsNotMotion(t *testing.T) {
	s := newScene(t)
	d := detector(t, motion.DefaultConfig())
	detect(t, d, s, nil, 0)
	speck := image.Rect(640, 360, 650, 370) // 100 px of 921,600: 0.01% < min_area 0.05%
	if r := detect(t, d, s, &speck, 0); r.Moving() {
		t.Fatalf("10×10 speck: %+v, want no motion", r)
	}
}

// In steady state a frame costs no heap allocation, moving or still.
func TestDetectAllocatesNothing(t *testing.T) {
	s := newScene(t)
	d := detector(t, motion.DefaultConfig())
	sq := image.Rect(400, 300, 520, 420)
	a, b := clone(s.next(nil, 0)), clone(s.next(&sq, 0))
	defer a.Close()
	defer b.Close()
	now := s.now
	if _, err := d.Detect(a, now); err != nil {
		t.Fatal(err)
	}
	moving := 0
	i := 0
	allocs := testing.AllocsPerRun(50, func() {
		i++
		now = now.Add(100 * time.Millisecond)
		f := a
		if i%2 == 0 {
			f = b
		}
		r, err := d.Detect(f, now)
		if err != nil {
			t.Fatal(err)
		}
		if r.Moving() {
			moving++
		}
	})
	if allocs != 0 {
		t.Errorf("%v heap allocations per frame; want 0", allocs)
	}
	if moving == 0 {
		t.Error("no frame moved: the test does not exercise the region search")
	}
}

func TestDetectRejectsBadFrames(t *testing.T) {
	d := detector(t, motion.DefaultConfig())
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := d.Detect(empty, time.Now()); err == nil {
		t.Error("an empty frame: no error")
	}
	f := gocv.NewMatWithSize(90, 160, gocv.MatTypeCV32FC3)
	defer f.Close()
	if _, err := d.Detect(f, time.Now()); err == nil {
		t.Error("a float frame: no error")
	}
}

// BenchmarkDetect1280x720 is the cost of one 1280×720 frame with a moving square, on one
// OpenCV thread (cv::setNumThreads(1)) as on a box whose cores run the model. cpu-ms/frame is
// the process's CPU time (getrusage) per frame, OpenCV's threads included.
func BenchmarkDetect1280x720(b *testing.B) {
	prev := gocv.GetNumThreads()
	gocv.SetNumThreads(1)
	defer gocv.SetNumThreads(prev)
	s := newScene(b)
	d := detector(b, motion.DefaultConfig())
	frames := make([]gocv.Mat, 8)
	for i := range frames {
		sq := image.Rect(100+40*i, 300, 220+40*i, 420)
		frames[i] = clone(s.next(&sq, 0))
		defer frames[i].Close()
	}
	now := s.now
	if _, err := d.Detect(frames[0], now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		now = now.Add(100 * time.Millisecond)
		if _, err := d.Detect(frames[i%len(frames)], now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(i), "cpu-ms/frame")
}

func clone(m gocv.Mat) gocv.Mat { return m.Clone() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A red square in front of a grey wall of the same brightness is motion: its grey level
// differs by 2 of 255, its red and blue channels by 100 and 40.
func TestColourChangeOfEqualBrightness(t *testing.T) {
	wall := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(100, 100, 100, 0), 720, 1280, gocv.MatTypeCV8UC3)
	defer wall.Close()
	f := gocv.NewMat()
	defer f.Close()
	d := detector(t, motion.DefaultConfig())
	now := time.Now()
	if _, err := d.Detect(wall, now); err != nil {
		t.Fatal(err)
	}
	sq := image.Rect(500, 200, 620, 440)
	wall.CopyTo(&f)
	if err := gocv.Rectangle(&f, sq, color.RGBA{R: 200, G: 60, B: 60}, -1); err != nil {
		t.Fatal(err)
	}
	r, err := d.Detect(f, now.Add(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Boxes) != 1 || iou(r.Boxes[0], sq) < 0.7 {
		t.Fatalf("red square %v of the wall's brightness: %+v, want its box", sq, r)
	}
}
