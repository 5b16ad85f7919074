package track

import (
	"math"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// TestEvaluateMatchesMotmetrics checks the metric code against py-motmetrics, the reference
// implementation of the MOT challenge metrics, on the tracker's output for a synthetic
// sequence with crossings: once as configured by default, once configured badly (every
// detection starts a track at once, tracks die at the first miss, weak overlaps match) so
// that false positives and identity switches occur.
func TestEvaluateMatchesMotmetrics(t *testing.T) {
	bad := Config{MinHits: 1, MaxAge: 1, IOU: 0.05, High: 0.1, Low: 0.1}
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "bad": bad} {
		t.Run(name, func(t *testing.T) { compareMotmetrics(t, cfg, name == "bad") })
	}
}

func compareMotmetrics(t *testing.T, cfg Config, wantErrors bool) {
	s := synthSequence(7, 300, 8, 3)
	hyp := runTracker(s, cfg, nil)
	var boxes []testenv.MOTBox
	for f := range s.frames {
		for _, g := range s.frames[f] {
			boxes = append(boxes, testenv.MOTBox{Frame: f, GT: true, ID: g.id,
				X1: float64(g.box[0]), Y1: float64(g.box[1]), X2: float64(g.box[2]), Y2: float64(g.box[3])})
		}
		for _, h := range hyp[f] {
			boxes = append(boxes, testenv.MOTBox{Frame: f, ID: int(h.id),
				X1: float64(h.box[0]), Y1: float64(h.box[1]), X2: float64(h.box[2]), Y2: float64(h.box[3])})
		}
	}
	ref := testenv.MOTMetrics(t, boxes)
	// The boxes went through 4 decimals: evaluate what py-motmetrics read.
	round4 := func(b [4]float32) [4]float32 {
		for i := range b {
			b[i] = float32(math.Round(float64(b[i])*1e4) / 1e4)
		}
		return b
	}
	for f := range s.frames {
		for i := range s.frames[f] {
			s.frames[f][i].box = round4(s.frames[f][i].box)
		}
		for i := range hyp[f] {
			hyp[f][i].box = round4(hyp[f][i].box)
		}
	}
	r := evaluate(s.frames, hyp)
	t.Logf("ours: GT %d FN %d FP %d IDSW %d IDTP %d MOTA %.6f IDF1 %.6f; py-motmetrics: %v", r.gt, r.fn, r.fp, r.idsw, r.idtp, r.mota, r.idf1, ref)
	if float64(r.gt) != ref["num_objects"] || float64(r.fn) != ref["num_misses"] || float64(r.fp) != ref["num_false_positives"] ||
		float64(r.idsw) != ref["num_switches"] || float64(r.idtp) != ref["idtp"] {
		t.Errorf("counts differ from py-motmetrics")
	}
	if math.Abs(r.mota-ref["mota"]) > 1e-9 || math.Abs(r.idf1-ref["idf1"]) > 1e-9 {
		t.Errorf("MOTA %v IDF1 %v, py-motmetrics %v %v", r.mota, r.idf1, ref["mota"], ref["idf1"])
	}
	if wantErrors && (r.fp == 0 || r.idsw == 0) {
		t.Errorf("the bad configuration made %d false positives and %d switches: the comparison does not cover them", r.fp, r.idsw)
	}
}
