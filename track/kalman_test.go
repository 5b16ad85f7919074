package track

import (
	"math"
	"testing"
)

// mat is a dense row-major matrix for the reference filter.
type mat struct {
	r, c int
	v    []float64
}

func newMat(r, c int) mat { return mat{r, c, make([]float64, r*c)} }

func (a mat) at(i, j int) float64 { return a.v[i*a.c+j] }

func (a mat) mul(b mat) mat {
	o := newMat(a.r, b.c)
	for i := range a.r {
		for j := range b.c {
			var s float64
			for k := range a.c {
				s += a.at(i, k) * b.at(k, j)
			}
			o.v[i*o.c+j] = s
		}
	}
	return o
}

func (a mat) t() mat {
	o := newMat(a.c, a.r)
	for i := range a.r {
		for j := range a.c {
			o.v[j*o.c+i] = a.at(i, j)
		}
	}
	return o
}

func (a mat) add(b mat, sign float64) mat {
	o := newMat(a.r, a.c)
	for i := range a.v {
		o.v[i] = a.v[i] + sign*b.v[i]
	}
	return o
}

func diag(d ...float64) mat {
	o := newMat(len(d), len(d))
	for i, v := range d {
		o.v[i*o.c+i] = v
	}
	return o
}

// inv4 inverts a 4×4 matrix by Gauss-Jordan elimination with partial pivoting.
func inv4(a mat) mat {
	n := a.r
	m := newMat(n, 2*n)
	for i := range n {
		for j := range n {
			m.v[i*m.c+j] = a.at(i, j)
		}
		m.v[i*m.c+n+i] = 1
	}
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(m.at(r, col)) > math.Abs(m.at(p, col)) {
				p = r
			}
		}
		for j := range 2 * n {
			m.v[col*m.c+j], m.v[p*m.c+j] = m.v[p*m.c+j], m.v[col*m.c+j]
		}
		piv := m.at(col, col)
		for j := range 2 * n {
			m.v[col*m.c+j] /= piv
		}
		for r := range n {
			if r != col {
				f := m.at(r, col)
				for j := range 2 * n {
					m.v[r*m.c+j] -= f * m.at(col, j)
				}
			}
		}
	}
	o := newMat(n, n)
	for i := range n {
		for j := range n {
			o.v[i*n+j] = m.at(i, n+j)
		}
	}
	return o
}

// TestKalmanMatchesDenseFilter runs the per-coordinate filter against the textbook 8-state
// filter (x = [cx cy w h vcx vcy vw vh], F, H, Q, R as dense matrices) on a noisy track.
func TestKalmanMatchesDenseFilter(t *testing.T) {
	boxes := [][4]float32{}
	for i := range 40 {
		x := float32(100 + 7*i + (i*37)%5)
		y := float32(50 + 3*i - (i*13)%4)
		w := float32(40 + i%3)
		h := float32(80 - (i*7)%5)
		boxes = append(boxes, [4]float32{x, y, x + w, y + h})
	}
	var k kalman
	k.init(boxes[0])

	F := diag(1, 1, 1, 1, 1, 1, 1, 1)
	for i := range 4 {
		F.v[i*8+4+i] = 1
	}
	H := newMat(4, 8)
	for i := range 4 {
		H.v[i*8+i] = 1
	}
	cx, cy, w, h := centre(boxes[0])
	x := newMat(8, 1)
	copy(x.v, []float64{cx, cy, w, h})
	scale := func(w, h float64) [4]float64 { return [4]float64{w, h, w, h} }
	s := scale(w, h)
	P := diag(sq(2*stdPosition*s[0]), sq(2*stdPosition*s[1]), sq(2*stdPosition*s[2]), sq(2*stdPosition*s[3]),
		sq(10*stdVelocity*s[0]), sq(10*stdVelocity*s[1]), sq(10*stdVelocity*s[2]), sq(10*stdVelocity*s[3]))
	for i, b := range boxes[1:] {
		k.predict(false)
		s = scale(x.v[2], x.v[3])
		Q := diag(sq(stdPosition*s[0]), sq(stdPosition*s[1]), sq(stdPosition*s[2]), sq(stdPosition*s[3]),
			sq(stdVelocity*s[0]), sq(stdVelocity*s[1]), sq(stdVelocity*s[2]), sq(stdVelocity*s[3]))
		x = F.mul(x)
		P = F.mul(P).mul(F.t()).add(Q, 1)

		k.update(b)
		s = scale(x.v[2], x.v[3])
		R := diag(sq(stdPosition*s[0]), sq(stdPosition*s[1]), sq(stdPosition*s[2]), sq(stdPosition*s[3]))
		zx, zy, zw, zh := centre(b)
		z := newMat(4, 1)
		copy(z.v, []float64{zx, zy, zw, zh})
		S := H.mul(P).mul(H.t()).add(R, 1)
		K := P.mul(H.t()).mul(inv4(S))
		x = x.add(K.mul(z.add(H.mul(x), -1)), 1)
		P = P.add(K.mul(H).mul(P), -1)

		got := []float64{k.cx.x, k.cy.x, k.w.x, k.h.x, k.cx.v, k.cy.v, k.w.v, k.h.v}
		for j, g := range got {
			if math.Abs(g-x.v[j]) > 1e-9*max(1, math.Abs(x.v[j])) {
				t.Fatalf("step %d: state[%d] = %v, dense filter %v", i+1, j, g, x.v[j])
			}
		}
		if math.Abs(k.cx.p00-P.at(0, 0)) > 1e-9 || math.Abs(k.cx.p01-P.at(0, 4)) > 1e-9 || math.Abs(k.h.p11-P.at(7, 7)) > 1e-9 {
			t.Fatalf("step %d: covariance differs: %v %v %v vs %v %v %v", i+1, k.cx.p00, k.cx.p01, k.h.p11, P.at(0, 0), P.at(0, 4), P.at(7, 7))
		}
	}
}

func sq(v float64) float64 { return v * v }
