package track

import "time"

type point struct{ x, y float64 }

func toPoints(poly [][]float64) []point {
	pts := make([]point, len(poly))
	for i, p := range poly {
		pts[i] = point{p[0], p[1]}
	}
	return pts
}

// area is the signed area of a polygon (shoelace formula).
func area(pts []point) float64 {
	var a float64
	for i := range pts {
		p, q := pts[i], pts[(i+1)%len(pts)]
		a += p.x*q.y - q.x*p.y
	}
	return a / 2
}

func cross(o, a, b point) float64 { return (a.x-o.x)*(b.y-o.y) - (a.y-o.y)*(b.x-o.x) }

func onSegment(p, q, r point) bool {
	return min(p.x, r.x) <= q.x && q.x <= max(p.x, r.x) && min(p.y, r.y) <= q.y && q.y <= max(p.y, r.y)
}

// segmentsIntersect reports whether segments ab and cd share a point (touching counts).
func segmentsIntersect(a, b, c, d point) bool {
	d1, d2 := cross(c, d, a), cross(c, d, b)
	d3, d4 := cross(a, b, c), cross(a, b, d)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && onSegment(c, a, d)) || (d2 == 0 && onSegment(c, b, d)) ||
		(d3 == 0 && onSegment(a, c, b)) || (d4 == 0 && onSegment(a, d, b))
}

// selfIntersection returns the first pair of non-adjacent edges (by their first corner) that
// meet, if any.
func selfIntersection(pts []point) (int, int, bool) {
	n := len(pts)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if j == i+1 || (i == 0 && j == n-1) {
				continue // adjacent edges share a corner
			}
			if segmentsIntersect(pts[i], pts[(i+1)%n], pts[j], pts[(j+1)%n]) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// inside reports whether p lies inside the polygon (even-odd rule; a point exactly on the
// border may fall either way, which inertia absorbs).
func inside(pts []point, p point) bool {
	in := false
	for i, j := 0, len(pts)-1; i < len(pts); j, i = i, i+1 {
		a, b := pts[i], pts[j]
		if (a.y > p.y) != (b.y > p.y) && p.x < (b.x-a.x)*(p.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}

// zone is a validated Zone ready for testing points.
type zone struct {
	name    string
	pts     []point
	classes []string // empty: every label
	inertia int
	loiter  time.Duration
}

func (z *zone) counts(label string) bool {
	if len(z.classes) == 0 {
		return true
	}
	for _, c := range z.classes {
		if c == label {
			return true
		}
	}
	return false
}

// zoneState is one track's membership of one zone.
type zoneState struct {
	in      bool      // counted as in the zone
	run     int       // consecutive frames on the other side of in
	since   time.Time // when the current run of frames inside began; zero while outside
	entered bool      // ever counted in the zone
}

// step advances the state by one observation of whether the object is inside at now; it
// reports whether membership changed.
func (s *zoneState) step(z *zone, inside bool, now time.Time) bool {
	if inside && s.since.IsZero() {
		s.since = now
	} else if !inside {
		s.since = time.Time{}
	}
	if inside == s.in {
		s.run = 0
		return false
	}
	s.run++
	if s.run < z.inertia {
		return false
	}
	if inside && now.Sub(s.since) < z.loiter {
		return false
	}
	s.in, s.run = inside, 0
	if inside {
		s.entered = true
	}
	return true
}
