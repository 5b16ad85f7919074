package track

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bruteForce returns the minimum total cost of assigning each of n rows a distinct column
// of m (n ≤ m), trying every injection: the independent reference for the Hungarian method.
func bruteForce(cost []float64, n, m int) float64 {
	best := math.Inf(1)
	used := make([]bool, m)
	var rec func(i int, sum float64)
	rec = func(i int, sum float64) {
		if i == n {
			best = min(best, sum)
			return
		}
		for j := range m {
			if !used[j] {
				used[j] = true
				rec(i+1, sum+cost[i*m+j])
				used[j] = false
			}
		}
	}
	rec(0, 0)
	return best
}

func TestHungarianMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h hungarian
	for trial := range 300 {
		n := 1 + rng.IntN(5)
		m := n + rng.IntN(3)
		cost := make([]float64, n*m)
		for i := range cost {
			cost[i] = float64(rng.IntN(20)) // ties on purpose
		}
		sol := make([]int, n)
		h.solve(cost, n, m, sol)
		seen := map[int]bool{}
		got := 0.0
		for i, j := range sol {
			if j < 0 || j >= m || seen[j] {
				t.Fatalf("trial %d: row %d got column %d (solution %v)", trial, i, j, sol)
			}
			seen[j] = true
			got += cost[i*m+j]
		}
		if want := bruteForce(cost, n, m); got != want {
			t.Fatalf("trial %d (%dx%d): total %v, brute force %v", trial, n, m, got, want)
		}
	}
}

// TestMatcherMatchesBruteForce checks the component-splitting matcher on sparse problems:
// it must match as many allowed pairs as possible, then at least cost.
func TestMatcherMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var mt matcher
	for trial := range 300 {
		n, m := 1+rng.IntN(6), 1+rng.IntN(6)
		dense := make([]float64, n*m)
		for i := range dense {
			dense[i] = forbidden
		}
		mt.reset(n, m)
		for r := range n {
			for c := range m {
				if rng.IntN(3) == 0 {
					v := float64(rng.IntN(10)) / 10
					dense[r*m+c] = v
					mt.allow(r, c, v)
				}
			}
		}
		rowCol := make([]int, n)
		mt.solve(rowCol)
		got, used := 0.0, map[int]bool{}
		matched := 0
		for r, c := range rowCol {
			if c < 0 {
				continue
			}
			if used[c] || dense[r*m+c] >= forbidden {
				t.Fatalf("trial %d: row %d matched to column %d, taken or not allowed", trial, r, c)
			}
			used[c] = true
			got += dense[r*m+c]
			matched++
		}
		// The reference: brute force over the dense matrix, padded with forbidden dummy
		// columns (a row left unmatched) when rows outnumber columns.
		pn, pm := n, max(m, n)
		pad := make([]float64, pn*pm)
		for r := range pn {
			for c := range pm {
				pad[r*pm+c] = forbidden
				if c < m {
					pad[r*pm+c] = dense[r*m+c]
				}
			}
		}
		want := bruteForce(pad, pn, pm)
		wantMatched := n - int(math.Round(want/forbidden))
		wantCost := want - float64(n-wantMatched)*forbidden
		if matched != wantMatched || math.Abs(got-wantCost) > 1e-6 {
			t.Fatalf("trial %d (%dx%d): %d pairs at cost %v, brute force %d pairs at %v", trial, n, m, matched, got, wantMatched, wantCost)
		}
	}
}

func TestIOU(t *testing.T) {
	for _, c := range []struct {
		a, b [4]float32
		want float64
	}{
		{[4]float32{0, 0, 10, 10}, [4]float32{0, 0, 10, 10}, 1},
		{[4]float32{0, 0, 10, 10}, [4]float32{5, 0, 15, 10}, 50.0 / 150},
		{[4]float32{0, 0, 10, 10}, [4]float32{10, 0, 20, 10}, 0},
		{[4]float32{0, 0, 10, 10}, [4]float32{2, 2, 4, 4}, 4.0 / 100},
		{[4]float32{0, 0, 0, 0}, [4]float32{0, 0, 0, 0}, 0},
	} {
		if got := iou(c.a, c.b); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("iou(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
