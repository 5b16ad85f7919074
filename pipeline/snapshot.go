package pipeline

import (
	"fmt"
	"image"
	"image/color"
	"slices"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/track"
)

// ErrNoCamera is returned by Snapshot for a camera name that is not configured.
var ErrNoCamera = fmt.Errorf("no such camera")

// Snapshot returns the camera's last processed frame as a JPEG with its detections (label,
// track id when tracked, score) and zones drawn, or nil and no error when no frame was
// processed yet.
func (p *Pipeline) Snapshot(name string) ([]byte, error) { return p.snapshot(name, false) }

// SnapshotWithMotion is Snapshot with the frame's motion boxes drawn as well (the live view's
// motion toggle; a camera in detect mode always has none).
func (p *Pipeline) SnapshotWithMotion(name string) ([]byte, error) { return p.snapshot(name, true) }

func (p *Pipeline) snapshot(name string, withMotion bool) ([]byte, error) {
	p.mu.Lock()
	cs, ok := p.cams[name]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("snapshot of %q: %w", name, ErrNoCamera)
	}
	cs.snapMu.Lock()
	if cs.snap == nil {
		cs.snapMu.Unlock()
		return nil, nil
	}
	img := cs.snap.Mat.Clone()
	dets := toCopies(cs)
	var moving []image.Rectangle
	if withMotion {
		moving = slices.Clone(cs.snapMotion)
	}
	cs.snapMu.Unlock()
	defer img.Close()

	if sc := cs.cam.Scene; sc != nil {
		if err := drawZones(&img, sc.Outlines()); err != nil {
			return nil, fmt.Errorf("snapshot of %q: %w", name, err)
		}
	}
	if err := drawMotion(&img, moving); err != nil {
		return nil, fmt.Errorf("snapshot of %q: %w", name, err)
	}
	jpg, err := annotate(&img, dets)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %q: %w", name, err)
	}
	return jpg, nil
}

// Box is a labelled box to draw on a picture.
type Box struct {
	Label string
	Box   [4]float32 // x1, y1, x2, y2 in pixels
}

// AnnotatedJPEG returns img as a JPEG with the boxes and their labels drawn; img is not changed.
func AnnotatedJPEG(img gocv.Mat, boxes []Box) ([]byte, error) {
	c := img.Clone()
	defer c.Close()
	dets := make([]detectionCopy, len(boxes))
	for i, b := range boxes {
		dets[i] = detectionCopy{label: b.Label, box: b.Box}
	}
	return annotate(&c, dets)
}

// annotate draws the boxes into img and encodes it as a JPEG.
func annotate(img *gocv.Mat, dets []detectionCopy) ([]byte, error) {
	green := color.RGBA{G: 255, A: 255}
	for _, d := range dets {
		r := image.Rect(int(d.box[0]), int(d.box[1]), int(d.box[2]), int(d.box[3]))
		if err := gocv.Rectangle(img, r, green, 2); err != nil {
			return nil, fmt.Errorf("draw box: %w", err)
		}
		y := max(r.Min.Y-4, 12)
		if err := gocv.PutText(img, d.label, image.Pt(r.Min.X, y), gocv.FontHersheySimplex, 0.45, green, 1); err != nil {
			return nil, fmt.Errorf("draw label: %w", err)
		}
	}
	buf, err := gocv.IMEncode(gocv.JPEGFileExt, *img)
	if err != nil {
		return nil, fmt.Errorf("encode JPEG: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

type detectionCopy struct {
	label string
	box   [4]float32
}

// toCopies copies the snapshot's detections with their labels; cs.snapMu is held.
func toCopies(cs *camState) []detectionCopy {
	out := make([]detectionCopy, len(cs.snapDets))
	for i, d := range cs.snapDets {
		out[i] = detectionCopy{label: fmt.Sprintf("%s %.2f", d.Label, d.Score), box: d.Box}
		if d.TrackID != 0 {
			out[i].label = fmt.Sprintf("%s #%d %.2f", d.Label, d.TrackID, d.Score)
		}
	}
	return out
}

// drawZones draws each zone's outline and name in yellow.
func drawZones(img *gocv.Mat, zones []track.Outline) error {
	yellow := color.RGBA{R: 255, G: 220, A: 255}
	w, h := float64(img.Cols()), float64(img.Rows())
	for _, z := range zones {
		n := len(z.Polygon)
		for i, p := range z.Polygon {
			q := z.Polygon[(i+1)%n]
			a, b := image.Pt(int(p[0]*w), int(p[1]*h)), image.Pt(int(q[0]*w), int(q[1]*h))
			if err := gocv.Line(img, a, b, yellow, 1); err != nil {
				return fmt.Errorf("draw zone %s: %w", z.Name, err)
			}
		}
		p := z.Polygon[0]
		at := image.Pt(int(p[0]*w)+3, max(int(p[1]*h)+14, 14))
		if err := gocv.PutText(img, z.Name, at, gocv.FontHersheySimplex, 0.4, yellow, 1); err != nil {
			return fmt.Errorf("draw zone %s: %w", z.Name, err)
		}
	}
	return nil
}
