package track

// The motion model is ByteTrack's constant-velocity Kalman filter with its noise weights (the
// standard deviations are proportional to the box size), written per coordinate: with the
// state (cx, cy, w, h) and their velocities, F, H, Q and R are block diagonal with one 2×2
// block per coordinate, so the 8×8 filter is exactly four independent 2-state filters. That
// saves the matrix algebra and allocations of a general filter.
const (
	stdPosition = 1.0 / 20
	stdVelocity = 1.0 / 160
)

// kf1 is one coordinate: value, velocity and their covariance.
type kf1 struct {
	x, v          float64
	p00, p01, p11 float64 // symmetric: p10 == p01
}

func (k *kf1) init(z, scale float64) {
	sp, sv := 2*stdPosition*scale, 10*stdVelocity*scale
	*k = kf1{x: z, p00: sp * sp, p11: sv * sv}
}

func (k *kf1) predict(scale float64) {
	qp, qv := stdPosition*scale, stdVelocity*scale
	k.x += k.v
	// P = F P Fᵀ + Q with F = [[1 1] [0 1]].
	k.p00 += 2*k.p01 + k.p11 + qp*qp
	k.p01 += k.p11
	k.p11 += qv * qv
}

func (k *kf1) update(z, scale float64) {
	r := stdPosition * scale
	s := k.p00 + r*r
	k0, k1 := k.p00/s, k.p01/s
	y := z - k.x
	k.x += k0 * y
	k.v += k1 * y
	p00, p01 := k.p00, k.p01
	k.p00 = (1 - k0) * p00
	k.p01 = (1 - k0) * p01
	k.p11 -= k1 * p01
}

// kalman is a box's motion state: centre, width and height, each with a velocity.
type kalman struct{ cx, cy, w, h kf1 }

func (k *kalman) init(b [4]float32) {
	cx, cy, w, h := centre(b)
	k.cx.init(cx, w)
	k.cy.init(cy, h)
	k.w.init(w, w)
	k.h.init(h, h)
}

func (k *kalman) predict(lost bool) {
	if lost {
		// ByteTrack: a lost track keeps moving but stops growing or shrinking.
		k.w.v, k.h.v = 0, 0
	}
	w, h := k.w.x, k.h.x
	k.cx.predict(w)
	k.cy.predict(h)
	k.w.predict(w)
	k.h.predict(h)
}

func (k *kalman) update(b [4]float32) {
	cx, cy, w, h := centre(b)
	sw, sh := k.w.x, k.h.x
	k.cx.update(cx, sw)
	k.cy.update(cy, sh)
	k.w.update(w, sw)
	k.h.update(h, sh)
}

// box returns the filter's box as x1, y1, x2, y2.
func (k *kalman) box() [4]float32 {
	w, h := max(k.w.x, 1e-3), max(k.h.x, 1e-3)
	return [4]float32{float32(k.cx.x - w/2), float32(k.cy.x - h/2), float32(k.cx.x + w/2), float32(k.cy.x + h/2)}
}

func centre(b [4]float32) (cx, cy, w, h float64) {
	w, h = float64(b[2]-b[0]), float64(b[3]-b[1])
	return float64(b[0]) + w/2, float64(b[1]) + h/2, w, h
}

// iou is the intersection over union of two x1, y1, x2, y2 boxes (0 when either is empty).
func iou(a, b [4]float32) float64 {
	ix := min(a[2], b[2]) - max(a[0], b[0])
	if ix <= 0 {
		return 0
	}
	iy := min(a[3], b[3]) - max(a[1], b[1])
	if iy <= 0 {
		return 0
	}
	inter := float64(ix) * float64(iy)
	ua := float64(a[2]-a[0])*float64(a[3]-a[1]) + float64(b[2]-b[0])*float64(b[3]-b[1]) - inter
	if ua <= 0 {
		return 0
	}
	return inter / ua
}
