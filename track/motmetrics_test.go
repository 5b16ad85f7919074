package track

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/srctree"
	"github.com/stardetr/stardetr/internal/testenv"
)

// motmetricsPath is where scripts/setup installs py-motmetrics (the version of versions.env).
func motmetricsPath(t *testing.T) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	v := srctree.Pinned(root, "MOTMETRICS_VERSION")
	if v == "" {
		t.Fatal("scripts/versions.env names no MOTMETRICS_VERSION")
	}
	dir := filepath.Join(root, "build", "pydeps", "motmetrics-"+v)
	if _, err := os.Stat(filepath.Join(dir, "motmetrics")); err != nil {
		t.Fatalf("py-motmetrics %s is not installed in %s: run scripts/setup (make test runs it)", v, dir)
	}
	return dir
}

// motmetricsScript computes the CLEAR MOT and identity metrics with py-motmetrics from
// "frame kind id x1 y1 x2 y2" lines on stdin (kind g: ground truth, h: hypothesis), matching at
// IoU ≥ 0.5, and prints them as JSON.
const motmetricsScript = `
import sys, json, collections
import numpy as np
import motmetrics as mm
frames = collections.defaultdict(lambda: ([], [], [], []))
n = 0
for line in sys.stdin:
    f, kind, i, x1, y1, x2, y2 = line.split()
    g = frames[int(f)]
    box = [float(x1), float(y1), float(x2) - float(x1), float(y2) - float(y1)]
    if kind == "g":
        g[0].append(int(i)); g[1].append(box)
    else:
        g[2].append(int(i)); g[3].append(box)
    n = max(n, int(f) + 1)
acc = mm.MOTAccumulator(auto_id=True)
for f in range(n):
    gi, gb, hi, hb = frames[f]
    d = mm.distances.iou_matrix(np.array(gb).reshape(-1, 4), np.array(hb).reshape(-1, 4), max_iou=0.5)
    acc.update(gi, hi, d)
m = mm.metrics.create().compute(acc, metrics=["num_objects", "num_misses", "num_false_positives", "num_switches", "mota", "idf1", "idtp"])
print(json.dumps({k: float(m[k]) for k in m}))
`

// TestEvaluateMatchesMotmetrics checks the metric code against py-motmetrics, the reference
// implementation of the MOT challenge metrics, on the tracker's output for a synthetic
// sequence with crossings: once as configured by default, once configured badly (every
// detection starts a track at once, tracks die at the first miss, weak overlaps match) so
// that false positives and identity switches occur.
func TestEvaluateMatchesMotmetrics(t *testing.T) {
	path := motmetricsPath(t)
	bad := Config{MinHits: 1, MaxAge: 1, IOU: 0.05, High: 0.1, Low: 0.1}
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "bad": bad} {
		t.Run(name, func(t *testing.T) { compareMotmetrics(t, path, cfg, name == "bad") })
	}
}

func compareMotmetrics(t *testing.T, path string, cfg Config, wantErrors bool) {
	s := synthSequence(7, 300, 8, 3)
	hyp := runTracker(s, cfg, nil)
	var in strings.Builder
	for f := range s.frames {
		for _, g := range s.frames[f] {
			fmt.Fprintf(&in, "%d g %d %.4f %.4f %.4f %.4f\n", f, g.id, g.box[0], g.box[1], g.box[2], g.box[3])
		}
		for _, h := range hyp[f] {
			fmt.Fprintf(&in, "%d h %d %.4f %.4f %.4f %.4f\n", f, h.id, h.box[0], h.box[1], h.box[2], h.box[3])
		}
	}
	cmd := exec.Command("/usr/bin/python3", "-c", motmetricsScript)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+path)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("py-motmetrics: %v\n%s", err, stderr)
	}
	var ref map[string]float64
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("py-motmetrics output %q: %v", out, err)
	}
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
