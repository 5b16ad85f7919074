package track

import "math"

// hungarian solves rectangular minimum-cost assignment problems (the Hungarian method with
// potentials, O(n²m)), reusing its buffers so that a steady caller does not allocate.
type hungarian struct {
	u, v, minv []float64
	p, way     []int
	used       []bool
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// solve assigns each of the n rows of the row-major n×m cost matrix (n ≤ m) a distinct
// column, minimising the total cost; rowCol[i] receives row i's column.
func (h *hungarian) solve(cost []float64, n, m int, rowCol []int) {
	h.u = grow(h.u, n+1)
	h.v = grow(h.v, m+1)
	h.minv = grow(h.minv, m+1)
	h.p = grow(h.p, m+1)
	h.way = grow(h.way, m+1)
	h.used = grow(h.used, m+1)
	clear(h.u)
	clear(h.v)
	clear(h.p)
	clear(h.way)
	u, v, p, way, minv, used := h.u, h.v, h.p, h.way, h.minv, h.used
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j] = math.Inf(1)
			used[j] = false
		}
		for {
			used[j0] = true
			i0, delta, j1 := p[j0], math.Inf(1), 0
			row := cost[(i0-1)*m:]
			for j := 1; j <= m; j++ {
				if used[j] {
					continue
				}
				if cur := row[j-1] - u[i0] - v[j]; cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= m; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	for j := 1; j <= m; j++ {
		if p[j] != 0 {
			rowCol[p[j]-1] = j - 1
		}
	}
}

// forbidden is the cost of a pair that must not be matched. It dominates any sum of allowed
// costs (each ≤ 1), so a minimum-cost assignment first maximises the allowed pairs.
const forbidden = 1e9

type edge struct {
	r, c int
	cost float64
}

// matcher finds a minimum-cost matching of rows (tracks) to columns (detections) over the
// allowed pairs only. Allowed pairs are sparse — a track overlaps few detections — so it
// splits them into connected components, matches the many one-to-one components directly,
// and runs the Hungarian method only on the small tangled ones (crossing objects).
type matcher struct {
	edges  []edge
	parent []int // union-find over rows (0..n-1) then columns (n..n+m-1)
	comp   []int // component index of each root, -1 for nodes without an allowed pair
	nr, nc []int // rows and columns of each component
	local  []int // each node's index within its component
	rowOff []int // start of each component's rows in rows (and columns in cols)
	colOff []int
	rows   []int // global rows of the components, component after component
	cols   []int
	off    []int // start of each component's matrix in cost
	cost   []float64
	sol    []int
	h      hungarian
	n, m   int
}

func (mt *matcher) reset(n, m int) {
	mt.n, mt.m = n, m
	mt.edges = mt.edges[:0]
	mt.parent = grow(mt.parent, n+m)
	for i := range mt.parent {
		mt.parent[i] = i
	}
}

func (mt *matcher) find(x int) int {
	for mt.parent[x] != x {
		mt.parent[x] = mt.parent[mt.parent[x]]
		x = mt.parent[x]
	}
	return x
}

// allow adds the pair (r, c) at cost (0 ≤ cost ≤ 1).
func (mt *matcher) allow(r, c int, cost float64) {
	mt.edges = append(mt.edges, edge{r, c, cost})
	a, b := mt.find(r), mt.find(mt.n+c)
	if a != b {
		mt.parent[a] = b
	}
}

// solve writes each row's column, or -1, into rowCol (length n).
func (mt *matcher) solve(rowCol []int) {
	for i := range rowCol[:mt.n] {
		rowCol[i] = -1
	}
	if len(mt.edges) == 0 {
		return
	}
	mt.labelComponents()
	total := mt.layoutComponents()
	mt.fillCosts(total)
	for ci := range mt.nr {
		mt.solveComponent(ci, rowCol)
	}
}

// labelComponents numbers the components that hold an allowed pair (comp, in the order of
// their first edge), counts their rows and columns (nr, nc) and gives each node its index
// within its component (local).
func (mt *matcher) labelComponents() {
	n, m := mt.n, mt.m
	mt.comp = grow(mt.comp, n+m)
	mt.local = grow(mt.local, n+m)
	for i := range mt.comp {
		mt.comp[i] = -1
	}
	mt.nr, mt.nc = mt.nr[:0], mt.nc[:0]
	for _, e := range mt.edges {
		if root := mt.find(e.r); mt.comp[root] < 0 {
			mt.comp[root] = len(mt.nr)
			mt.nr = append(mt.nr, 0)
			mt.nc = append(mt.nc, 0)
		}
	}
	for node := 0; node < n+m; node++ {
		ci := mt.comp[mt.find(node)]
		if ci < 0 {
			continue
		}
		if node < n {
			mt.local[node] = mt.nr[ci]
			mt.nr[ci]++
		} else {
			mt.local[node] = mt.nc[ci]
			mt.nc[ci]++
		}
	}
}

// layoutComponents places the components one after another: their rows in rows, their
// columns in cols (from rowOff and colOff) and their cost matrices from off; it returns the
// length of all the matrices together.
func (mt *matcher) layoutComponents() (total int) {
	n, m := mt.n, mt.m
	k := len(mt.nr)
	mt.rowOff, mt.colOff, mt.off = grow(mt.rowOff, k), grow(mt.colOff, k), grow(mt.off, k)
	nrows, ncols := 0, 0
	for ci := range k {
		mt.rowOff[ci], mt.colOff[ci], mt.off[ci] = nrows, ncols, total
		nrows += mt.nr[ci]
		ncols += mt.nc[ci]
		total += mt.nr[ci] * mt.nc[ci]
	}
	mt.rows, mt.cols = grow(mt.rows, nrows), grow(mt.cols, ncols)
	for node := 0; node < n+m; node++ {
		ci := mt.comp[mt.find(node)]
		if ci < 0 {
			continue
		}
		if node < n {
			mt.rows[mt.rowOff[ci]+mt.local[node]] = node
		} else {
			mt.cols[mt.colOff[ci]+mt.local[node]] = node - n
		}
	}
	return total
}

// fillCosts writes each component's cost matrix: forbidden everywhere but the allowed pairs.
// A matrix is transposed where its rows outnumber its columns: the solver wants no more rows
// than columns.
func (mt *matcher) fillCosts(total int) {
	mt.cost = grow(mt.cost, total)
	for i := range mt.cost {
		mt.cost[i] = forbidden
	}
	for _, e := range mt.edges {
		ci := mt.comp[mt.find(e.r)]
		lr, lc := mt.local[e.r], mt.local[mt.n+e.c]
		if mt.nr[ci] <= mt.nc[ci] {
			mt.cost[mt.off[ci]+lr*mt.nc[ci]+lc] = e.cost
		} else {
			mt.cost[mt.off[ci]+lc*mt.nr[ci]+lr] = e.cost
		}
	}
}

// solveComponent matches component ci (directly where it is one pair, else by the Hungarian
// method) and writes its allowed matches into rowCol.
func (mt *matcher) solveComponent(ci int, rowCol []int) {
	nr, nc := mt.nr[ci], mt.nc[ci]
	a, b := min(nr, nc), max(nr, nc)
	c := mt.cost[mt.off[ci] : mt.off[ci]+nr*nc]
	mt.sol = grow(mt.sol, a)
	if a == 1 && b == 1 {
		mt.sol[0] = 0
	} else {
		mt.h.solve(c, a, b, mt.sol)
	}
	for i := range a {
		j := mt.sol[i]
		if c[i*b+j] >= forbidden {
			continue
		}
		lr, lc := i, j
		if nr > nc {
			lr, lc = j, i
		}
		rowCol[mt.rows[mt.rowOff[ci]+lr]] = mt.cols[mt.colOff[ci]+lc]
	}
}
