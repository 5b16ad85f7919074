package track

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// A synthetic MOT-style sequence: objects enter, move at constant velocity with a little
// wobble, some pairs cross each other head on, and leave. The ground truth is exact; the
// detections fed to the tracker are the ground-truth boxes with pixel noise, misses, lower
// scores while an object is occluded, and false positives.

type gtBox struct {
	id  int
	box [4]float32
}

type sequence struct {
	w, h     int
	frames   [][]gtBox     // ground truth per frame
	dets     [][]Detection // what the "detector" reports per frame
	crossing map[int]bool  // ground-truth ids whose box ever overlaps another's
}

type mover struct {
	id             int
	start, end     int
	x, y, vx, vy   float64
	bw, bh, wobble float64
}

func synthSequence(seed uint64, frames, objects, crossPairs int) *sequence {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &sequence{w: 1920, h: 1080, crossing: map[int]bool{}}
	var ms []mover
	id := 1
	// Free movers in their own horizontal lanes, so they do not meet each other.
	lanes := objects
	for i := range objects {
		laneH := float64(s.h) / float64(lanes)
		bh := laneH * 0.6
		start := rng.IntN(frames / 3)
		speed := 2 + rng.Float64()*6
		x := 50 + rng.Float64()*200
		if i%2 == 1 {
			x, speed = float64(s.w)-250-rng.Float64()*200, -speed
		}
		ms = append(ms, mover{id: id, start: start, end: start + frames/2 + rng.IntN(frames/2),
			x: x, y: laneH*float64(i) + laneH*0.2, vx: speed, vy: 0, bw: bh * 0.5, bh: bh, wobble: 1})
		id++
	}
	// Crossing pairs: two objects on one line moving towards each other, passing through.
	for p := range crossPairs {
		y := 100 + float64(p)*float64(s.h-300)/float64(max(crossPairs, 1))
		start := 10 + rng.IntN(frames/4)
		for k := range 2 {
			x, vx := 100.0, 6.0
			if k == 1 {
				x, vx = float64(s.w)-200, -6.0
			}
			ms = append(ms, mover{id: id, start: start, end: start + int(float64(s.w-300)/6), x: x, y: y + float64(k)*12,
				vx: vx, vy: 0, bw: 60, bh: 120, wobble: 0.5})
			id++
		}
	}
	for f := range frames {
		var gt []gtBox
		for i := range ms {
			m := &ms[i]
			if f < m.start || f >= m.end {
				continue
			}
			t := float64(f - m.start)
			x := m.x + m.vx*t + m.wobble*math.Sin(t/7)
			y := m.y + m.vy*t + m.wobble*math.Cos(t/5)
			b := [4]float32{float32(x), float32(y), float32(x + m.bw), float32(y + m.bh)}
			if b[2] < 0 || b[0] > float32(s.w) {
				continue
			}
			gt = append(gt, gtBox{m.id, b})
		}
		for i := range gt {
			for j := range gt {
				if i != j && iou(gt[i].box, gt[j].box) > 0 {
					s.crossing[gt[i].id] = true
				}
			}
		}
		var dets []Detection
		for i, g := range gt {
			occluded := false
			for j := range gt {
				if i != j && iou(g.box, gt[j].box) > 0.3 {
					occluded = true
				}
			}
			if rng.Float64() < 0.08 {
				continue // missed
			}
			score := 0.6 + 0.35*rng.Float32()
			if occluded {
				score = 0.2 + 0.3*rng.Float32()
			}
			var b [4]float32
			for k := range b {
				b[k] = g.box[k] + float32(rng.NormFloat64()*2)
			}
			dets = append(dets, Detection{ClassID: 0, Label: "person", Score: score, Box: b})
		}
		for range rng.IntN(3) { // false positives: short-lived, anywhere
			x, y := rng.Float64()*float64(s.w-80), rng.Float64()*float64(s.h-160)
			dets = append(dets, Detection{ClassID: 0, Label: "person", Score: 0.15 + 0.5*rng.Float32(),
				Box: [4]float32{float32(x), float32(y), float32(x + 40 + rng.Float64()*40), float32(y + 80 + rng.Float64()*80)}})
		}
		rng.Shuffle(len(dets), func(i, j int) { dets[i], dets[j] = dets[j], dets[i] })
		s.frames = append(s.frames, gt)
		s.dets = append(s.dets, dets)
	}
	return s
}

// motResult are the CLEAR MOT and identity metrics of one run.
type motResult struct {
	gt, fn, fp, idsw int
	idtp, hyp        int
	mota, idf1       float64
	switchedIDs      map[int]bool // ground-truth ids that had an identity switch
}

type hypBox struct {
	id  uint64
	box [4]float32
}

// evaluate computes MOTA (CLEAR MOT: per frame, keep last frame's correspondences that still
// overlap at IoU ≥ 0.5, match the rest by the Hungarian method on 1 − IoU; an identity switch
// is a ground-truth object matched to another track than at its previous match) and IDF1 (one
// global bipartite matching of ground-truth ids to track ids maximising the frames where the
// two overlap at IoU ≥ 0.5).
func evaluate(gt [][]gtBox, hyp [][]hypBox) motResult {
	const thr = 0.5
	r := motResult{switchedIDs: map[int]bool{}}
	last := map[int]uint64{}      // gt id → track id at its latest match
	prevMatch := map[int]uint64{} // correspondences of the previous frame
	co := map[[2]uint64]int{}     // (gt id, track id) → frames overlapping
	gtFrames, hypFrames := map[int]int{}, map[uint64]int{}
	var h hungarian
	for f := range gt {
		G, Hs := gt[f], hyp[f]
		r.gt += len(G)
		r.hyp += len(Hs)
		for _, g := range G {
			gtFrames[g.id]++
			for _, x := range Hs {
				if iou(g.box, x.box) >= thr {
					co[[2]uint64{uint64(g.id), x.id}]++
				}
			}
		}
		for _, x := range Hs {
			hypFrames[x.id]++
		}
		gMatch := make([]int, len(G))
		hUsed := make([]bool, len(Hs))
		for i := range gMatch {
			gMatch[i] = -1
		}
		for i, g := range G {
			if hid, ok := prevMatch[g.id]; ok {
				for j, x := range Hs {
					if !hUsed[j] && x.id == hid && iou(g.box, x.box) >= thr {
						gMatch[i], hUsed[j] = j, true
					}
				}
			}
		}
		var rows, cols []int
		for i := range G {
			if gMatch[i] < 0 {
				rows = append(rows, i)
			}
		}
		for j := range Hs {
			if !hUsed[j] {
				cols = append(cols, j)
			}
		}
		for _, pr := range minCostPairs(&h, len(rows), len(cols), func(a, b int) float64 {
			if v := iou(G[rows[a]].box, Hs[cols[b]].box); v >= thr {
				return 1 - v
			}
			return forbidden
		}) {
			gMatch[rows[pr[0]]], hUsed[cols[pr[1]]] = cols[pr[1]], true
		}
		prevMatch = map[int]uint64{}
		for i, g := range G {
			j := gMatch[i]
			if j < 0 {
				r.fn++
				continue
			}
			hid := Hs[j].id
			if l, ok := last[g.id]; ok && l != hid {
				r.idsw++
				r.switchedIDs[g.id] = true
			}
			last[g.id] = hid
			prevMatch[g.id] = hid
		}
		for j := range Hs {
			if !hUsed[j] {
				r.fp++
			}
		}
	}
	r.mota = 1 - float64(r.fn+r.fp+r.idsw)/float64(r.gt)
	// IDF1: maximise Σ co-occurrence over a one-to-one map of gt ids to track ids.
	var gids []int
	var hids []uint64
	for g := range gtFrames {
		gids = append(gids, g)
	}
	for x := range hypFrames {
		hids = append(hids, x)
	}
	for _, pr := range minCostPairs(&h, len(gids), len(hids), func(a, b int) float64 {
		return -float64(co[[2]uint64{uint64(gids[a]), hids[b]}])
	}) {
		r.idtp += co[[2]uint64{uint64(gids[pr[0]]), hids[pr[1]]}]
	}
	r.idf1 = 2 * float64(r.idtp) / float64(r.gt+r.hyp)
	return r
}

// minCostPairs assigns items a < n to items b < m one to one at minimum total cost(a, b)
// (transposing for the solver, which wants n ≤ m) and returns the pairs whose cost is
// allowed (below forbidden).
func minCostPairs(h *hungarian, n, m int, cost func(a, b int) float64) [][2]int {
	if n == 0 || m == 0 {
		return nil
	}
	tr := n > m
	rn, rm := n, m
	if tr {
		rn, rm = m, n
	}
	c := make([]float64, rn*rm)
	for i := range rn {
		for j := range rm {
			if tr {
				c[i*rm+j] = cost(j, i)
			} else {
				c[i*rm+j] = cost(i, j)
			}
		}
	}
	sol := make([]int, rn)
	h.solve(c, rn, rm, sol)
	var out [][2]int
	for i, j := range sol {
		if c[i*rm+j] >= forbidden {
			continue
		}
		if tr {
			out = append(out, [2]int{j, i})
		} else {
			out = append(out, [2]int{i, j})
		}
	}
	return out
}

// TestEvaluateHandComputed checks the metric code on a case worked out by hand:
//
//	frame 0: A and B each matched, by tracks 1 and 2
//	frame 1: A matched by 1; B missed (FN); a stray box (FP)
//	frame 2: A matched by 2, B matched by 1: both switch (2 IDSW)
//	frame 3: A matched by 2; B absent; track 1 off on its own (FP)
//
// GT = 2+2+2+1 = 7, FN = 1, FP = 2, IDSW = 2: MOTA = 1 − 5/7.
// Hypotheses: 2+2+2+2 = 8. Co-occurrence: (A,1)=2, (A,2)=2, (B,2)=1, (B,1)=1; the best
// one-to-one map is A→1, B→2 (3) or A→2, B→1 (3): IDTP = 3, IDF1 = 6/15 = 0.4.
func TestEvaluateHandComputed(t *testing.T) {
	box := func(x float32) [4]float32 { return [4]float32{x, 0, x + 10, 10} }
	far := box(500)
	gt := [][]gtBox{
		{{1, box(0)}, {2, box(100)}},
		{{1, box(0)}, {2, box(100)}},
		{{1, box(0)}, {2, box(100)}},
		{{1, box(0)}},
	}
	hyp := [][]hypBox{
		{{1, box(0)}, {2, box(100)}},
		{{1, box(1)}, {3, far}},
		{{2, box(0)}, {1, box(100)}},
		{{2, box(0)}, {1, far}},
	}
	r := evaluate(gt, hyp)
	if r.gt != 7 || r.fn != 1 || r.fp != 2 || r.idsw != 2 || r.hyp != 8 || r.idtp != 3 {
		t.Fatalf("gt %d fn %d fp %d idsw %d hyp %d idtp %d; want 7 1 2 2 8 3", r.gt, r.fn, r.fp, r.idsw, r.hyp, r.idtp)
	}
	if math.Abs(r.mota-2.0/7) > 1e-12 || math.Abs(r.idf1-0.4) > 1e-12 {
		t.Fatalf("MOTA %v IDF1 %v, want %v and 0.4", r.mota, r.idf1, 2.0/7)
	}
}

// runTracker feeds a sequence through a Scene at 10 fps and collects the confirmed
// tracks' boxes per frame (a detection with a track id is a hypothesis).
// runTracker runs a scene with the given class labels (nil: just "person") over s's detections.
func runTracker(s *sequence, cfg Config, labels []string) [][]hypBox {
	if labels == nil {
		labels = []string{"person"}
	}
	sc := NewScene(cfg, nil, labels)
	t0 := time.Unix(1_800_000_000, 0)
	var out [][]hypBox
	for f, dets := range s.dets {
		res := sc.Update(t0.Add(time.Duration(f)*100*time.Millisecond), s.w, s.h, dets)
		var hs []hypBox
		for i, id := range res.TrackIDs {
			if id != 0 {
				hs = append(hs, hypBox{id, dets[i].Box})
			}
		}
		out = append(out, hs)
	}
	return out
}

// TestTrackerMOT holds the tracker to the accuracy goals on the synthetic sequence:
// IDF1 ≥ 0.9 with crossings, no identity switch on a track that crosses nothing.
func TestTrackerMOT(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	for _, seed := range []uint64{1, 2, 3} {
		s := synthSequence(seed, 400, 8, 3)
		r := evaluate(s.frames, runTracker(s, cfg, nil))
		t.Logf("seed %d: GT %d, FN %d, FP %d, IDSW %d, MOTA %.3f, IDF1 %.3f, crossing ids %d", seed, r.gt, r.fn, r.fp, r.idsw, r.mota, r.idf1, len(s.crossing))
		if len(s.crossing) < 6 {
			t.Fatalf("seed %d: only %d ground-truth ids cross: the sequence does not test crossings", seed, len(s.crossing))
		}
		if r.idf1 < 0.9 {
			t.Errorf("seed %d: IDF1 %.3f < 0.9", seed, r.idf1)
		}
		for id := range r.switchedIDs {
			if !s.crossing[id] {
				t.Errorf("seed %d: ground-truth id %d crosses nothing but had an identity switch", seed, id)
			}
		}
	}
}

// BenchmarkTrackerMOT reports the accuracy metrics of one sequence (see TestTrackerMOT).
func BenchmarkTrackerMOT(b *testing.B) {
	cfg := DefaultConfig()
	s := synthSequence(1, 400, 8, 3)
	var r motResult
	for b.Loop() {
		r = evaluate(s.frames, runTracker(s, cfg, nil))
	}
	b.ReportMetric(r.mota, "MOTA")
	b.ReportMetric(r.idf1, "IDF1")
	b.ReportMetric(float64(r.idsw), "IDSW")
}
