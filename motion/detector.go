package motion

import (
	"errors"
	"fmt"
	"image"
	"math"
	"time"

	"gocv.io/x/gocv"
)

const (
	// Width is the width of the working copy; its height keeps the frame's aspect ratio.
	Width = 160
	// tau is the time constant of the background average: a change that stays (a parked car,
	// a door left open) stops counting as motion after about a second, whatever the frame rate.
	tau = 500 * time.Millisecond
	// GlobalChange is the fraction of the unmasked picture that, changed at once, is a new
	// picture (lights, auto-exposure) rather than motion: the background restarts from it.
	// A person close to the camera changes a large region but rarely more than half of it.
	GlobalChange = 0.6
	// MaxBoxes bounds the boxes reported per frame; regions past it still count as motion.
	MaxBoxes = 32
)

// Result is what one frame showed. Boxes belong to the Detector and stay valid until the next
// Detect.
type Result struct {
	// Boxes are the moving regions in the frame's pixels, at most MaxBoxes.
	Boxes []image.Rectangle
	// Changed is the fraction of the unmasked working copy that differed from the background.
	Changed float64
	// Recalibrated is set when the frame changed almost everywhere and the background was
	// reset to it: no motion is reported for it. The first frame recalibrates too.
	Recalibrated bool
}

// Moving reports whether the frame showed motion.
func (r Result) Moving() bool { return len(r.Boxes) > 0 }

// Detector finds motion in the frames of one camera. Its buffers are sized on the first
// frame (again when the frame size changes) and reused, so Detect does not allocate in steady
// state. It is not safe for concurrent use: one goroutine calls Detect.
type Detector struct {
	cfg Config

	frameW, frameH int // the frame size the buffers are for; 0 before the first frame
	w, h           int // the working copy's size
	channels       int // the frame's channels: 3 (BGR), 4 (BGRA: alpha ignored) or 1 (grey)
	small          gocv.Mat
	bg             []float32 // the background average, per pixel and channel
	changed        []uint8   // 1 where the pixel differs from the background
	dilated        []uint8
	tmp            []uint8
	ignore         []bool  // masked pixels
	seen           []bool  // visited by the region fill
	stack          []int32 // the region fill's work list
	unmasked       int
	minPixels      int
	last           time.Time
	boxes          []image.Rectangle
}

// New returns a detector for a validated cfg. Close frees its OpenCV buffers.
func New(cfg Config) *Detector {
	return &Detector{cfg: cfg, small: gocv.NewMat(), boxes: make([]image.Rectangle, 0, MaxBoxes)}
}

// Close frees the detector's OpenCV buffers.
func (d *Detector) Close() error {
	return d.small.Close()
}

// Reset forgets the background: the next frame recalibrates.
func (d *Detector) Reset() { d.frameW, d.frameH = 0, 0 }

// Detect compares the frame (8-bit BGR, BGRA or grey) taken at `at` with the background,
// updates the background and returns the moving regions.
func (d *Detector) Detect(frame gocv.Mat, at time.Time) (Result, error) {
	fw, fh := frame.Cols(), frame.Rows()
	if fw <= 0 || fh <= 0 {
		return Result{}, errors.New("motion: empty frame")
	}
	if depth := frame.Type() & 7; depth != 0 { // CV_8U is depth 0
		return Result{}, fmt.Errorf("motion: frame type %v is not 8-bit: give 8-bit BGR, BGRA or grey", frame.Type())
	}
	ch := frame.Channels()
	if ch != 1 && ch != 3 && ch != 4 {
		return Result{}, fmt.Errorf("motion: frames with %d channels are not supported: give BGR, BGRA or grey", ch)
	}
	first := fw != d.frameW || fh != d.frameH || ch != d.channels
	if first {
		d.setup(fw, fh, ch)
	}
	if err := gocv.Resize(frame, &d.small, image.Pt(d.w, d.h), 0, 0, gocv.InterpolationArea); err != nil {
		return Result{}, fmt.Errorf("motion: resize: %w", err)
	}
	pix, err := d.small.DataPtrUint8()
	if err != nil {
		return Result{}, fmt.Errorf("motion: %w", err)
	}
	if len(pix) != d.w*d.h*ch {
		return Result{}, fmt.Errorf("motion: working copy has %d values, want %d", len(pix), d.w*d.h*ch)
	}
	dt := at.Sub(d.last)
	d.last = at
	if first {
		d.recalibrate(pix)
		return Result{Boxes: d.boxes[:0], Recalibrated: true}, nil
	}
	alpha := float32(0.1) // frames without a usable time step (equal or backwards times)
	if dt > 0 {
		alpha = float32(1 - math.Exp(-dt.Seconds()/tau.Seconds()))
	}
	n := d.compare(pix, float32(d.cfg.Threshold), alpha)
	res := Result{Changed: float64(n) / float64(max(d.unmasked, 1))}
	if res.Changed > GlobalChange {
		d.recalibrate(pix)
		res.Recalibrated = true
		res.Boxes = d.boxes[:0]
		return res, nil
	}
	if n == 0 {
		res.Boxes = d.boxes[:0]
		return res, nil
	}
	d.dilate()
	res.Boxes = d.regions()
	return res, nil
}

// setup sizes the buffers for frames of fw×fh with ch channels and rasterises the masks.
func (d *Detector) setup(fw, fh, ch int) {
	d.frameW, d.frameH, d.channels = fw, fh, ch
	d.w = min(Width, fw)
	d.h = max(1, int(math.Round(float64(fh)*float64(d.w)/float64(fw))))
	n := d.w * d.h
	d.bg = make([]float32, n*ch)
	d.changed = make([]uint8, n)
	d.dilated = make([]uint8, n)
	d.tmp = make([]uint8, n)
	d.ignore = make([]bool, n)
	d.seen = make([]bool, n)
	d.stack = make([]int32, 0, n)
	d.unmasked = 0
	for y := range d.h {
		for x := range d.w {
			// A pixel is masked when its centre lies in a mask.
			px, py := (float64(x)+0.5)/float64(d.w), (float64(y)+0.5)/float64(d.h)
			for _, poly := range d.cfg.Masks {
				if inside(poly, px, py) {
					d.ignore[y*d.w+x] = true
					break
				}
			}
			if !d.ignore[y*d.w+x] {
				d.unmasked++
			}
		}
	}
	d.minPixels = max(1, int(math.Ceil(d.cfg.MinArea*float64(n))))
}

func (d *Detector) recalibrate(pix []uint8) {
	for i, p := range pix {
		d.bg[i] = float32(p)
	}
}

// compare marks the changed pixels, moves the background towards the frame by alpha and
// returns how many unmasked pixels changed. A pixel changed when one of its colour channels
// moved by more than thr: a red coat in front of a grey wall of the same brightness changes
// red and blue by ~100 levels but grey by ~10.
func (d *Detector) compare(pix []uint8, thr, alpha float32) int {
	n := 0
	ch := d.channels
	colours := min(ch, 3)
	bg, changed, ign := d.bg[:len(pix)], d.changed[:len(pix)/ch], d.ignore[:len(pix)/ch]
	for i := range changed {
		px, b := pix[i*ch:i*ch+colours], bg[i*ch:i*ch+colours]
		var most float32
		for k, p := range px {
			diff := float32(p) - b[k]
			b[k] += alpha * diff
			most = max(most, diff, -diff)
		}
		if !ign[i] && most > thr {
			changed[i] = 1
			n++
		} else {
			changed[i] = 0
		}
	}
	return n
}

// dilate grows the changed pixels by one pixel in every direction (a 3×3 square, one pixel of
// the working copy being 8 of a 720p frame), so that the pieces of one moving object join
// into one region; masked pixels stay out.
func (d *Detector) dilate() {
	w, h := d.w, d.h
	for y := range h {
		row, out := d.changed[y*w:(y+1)*w], d.tmp[y*w:(y+1)*w]
		for x := range w {
			v := row[x]
			if x > 0 {
				v |= row[x-1]
			}
			if x < w-1 {
				v |= row[x+1]
			}
			out[x] = v
		}
	}
	for y := range h {
		out := d.dilated[y*w : (y+1)*w]
		cur := d.tmp[y*w : (y+1)*w]
		copy(out, cur)
		if y > 0 {
			for x, v := range d.tmp[(y-1)*w : y*w] {
				out[x] |= v
			}
		}
		if y < h-1 {
			for x, v := range d.tmp[(y+1)*w : (y+2)*w] {
				out[x] |= v
			}
		}
		for x := range out {
			if d.ignore[y*w+x] {
				out[x] = 0
			}
		}
	}
}

// regions returns, for each 8-connected region of dilated pixels that holds at least minPixels
// changed pixels, the bounding box of its changed pixels in frame pixels.
func (d *Detector) regions() []image.Rectangle {
	w, h := d.w, d.h
	clear(d.seen)
	d.boxes = d.boxes[:0]
	for start, v := range d.dilated {
		if v == 0 || d.seen[start] {
			continue
		}
		x1, y1, x2, y2 := w, h, -1, -1
		count := 0
		d.seen[start] = true
		d.stack = append(d.stack[:0], int32(start))
		for len(d.stack) > 0 {
			i := int(d.stack[len(d.stack)-1])
			d.stack = d.stack[:len(d.stack)-1]
			x, y := i%w, i/w
			if d.changed[i] != 0 { // the box is the changed pixels', without the dilation's margin
				x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
				count++
			}
			for dy := -1; dy <= 1; dy++ {
				ny := y + dy
				if ny < 0 || ny >= h {
					continue
				}
				for dx := -1; dx <= 1; dx++ {
					nx := x + dx
					if nx < 0 || nx >= w {
						continue
					}
					j := ny*w + nx
					if d.dilated[j] != 0 && !d.seen[j] {
						d.seen[j] = true
						d.stack = append(d.stack, int32(j))
					}
				}
			}
		}
		if count < d.minPixels {
			continue
		}
		if len(d.boxes) == MaxBoxes {
			// Still motion: the regions past the bound join the last box.
			d.boxes[MaxBoxes-1] = d.boxes[MaxBoxes-1].Union(d.scale(x1, y1, x2, y2))
			continue
		}
		d.boxes = append(d.boxes, d.scale(x1, y1, x2, y2))
	}
	return d.boxes
}

// scale maps a box of working-copy pixels (inclusive corners) to frame pixels.
func (d *Detector) scale(x1, y1, x2, y2 int) image.Rectangle {
	sx, sy := float64(d.frameW)/float64(d.w), float64(d.frameH)/float64(d.h)
	return image.Rect(int(float64(x1)*sx), int(float64(y1)*sy),
		min(d.frameW, int(math.Ceil(float64(x2+1)*sx))), min(d.frameH, int(math.Ceil(float64(y2+1)*sy))))
}

// inside reports whether (x, y) lies inside the polygon (even-odd rule).
func inside(poly [][]float64, x, y float64) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		xi, yi, xj, yj := poly[i][0], poly[i][1], poly[j][0], poly[j][1]
		if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}
