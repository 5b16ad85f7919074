package yoloval

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// randomSet makes a val set of nimg images whose detections hit their objects at varied IoUs,
// with misses, duplicates, wrong classes, objects without detections and detections on images
// without objects, so that every branch of the matching and the AP curves is exercised.
func randomSet(seed uint64, nimg, nc int) ([][]Pred, [][]Truth) {
	r := rand.New(rand.NewPCG(seed, 7))
	preds := make([][]Pred, nimg)
	truth := make([][]Truth, nimg)
	for i := range nimg {
		for range r.IntN(5) {
			x, y := r.Float32()*500, r.Float32()*300
			w, h := 20+r.Float32()*100, 20+r.Float32()*100
			t := Truth{Class: r.IntN(nc), XYXY: [4]float32{x, y, x + w, y + h}}
			truth[i] = append(truth[i], t)
			for range r.IntN(3) { // 0-2 detections near each object
				j := func() float32 { return (r.Float32() - 0.5) * w * 0.4 }
				cls := t.Class
				if r.Float32() < 0.15 {
					cls = r.IntN(nc)
				}
				preds[i] = append(preds[i], Pred{Class: cls, Score: r.Float32(),
					XYXY: [4]float32{x + j(), y + j(), x + w + j(), y + h + j()}})
			}
		}
		for range r.IntN(4) { // background detections
			x, y := r.Float32()*500, r.Float32()*300
			preds[i] = append(preds[i], Pred{Class: r.IntN(nc), Score: r.Float32() * 0.6,
				XYXY: [4]float32{x, y, x + 30, y + 30}})
		}
		slices.SortStableFunc(preds[i], func(a, b Pred) int {
			if a.Score > b.Score {
				return -1
			}
			if a.Score < b.Score {
				return 1
			}
			return 0
		})
	}
	return preds, truth
}

// venvPython is the interpreter scripts/setup installs ultralytics into.
func venvPython(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(t), "build", "venv", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found: run `make setup` (it installs the pinned ultralytics into build/venv)", p)
	}
	return p
}

func TestMetricsMatchUltralytics(t *testing.T) {
	py := venvPython(t)
	names := []string{"a", "b", "c", "d"}
	type img struct {
		Preds [][6]float32 `json:"preds"`
		Truth [][5]float32 `json:"truth"`
	}
	type set struct {
		Names  []string `json:"names"`
		Images []img    `json:"images"`
	}
	seeds := []uint64{1, 2, 3}
	var docs []set
	var results []Results
	for _, seed := range seeds {
		preds, truth := randomSet(seed, 40, 3) // class d never occurs: it must not count in the means
		doc := set{Names: names}
		var s Stats
		for i := range preds {
			var im img
			for _, p := range preds[i] {
				im.Preds = append(im.Preds, [6]float32{p.XYXY[0], p.XYXY[1], p.XYXY[2], p.XYXY[3], p.Score, float32(p.Class)})
			}
			for _, g := range truth[i] {
				im.Truth = append(im.Truth, [5]float32{float32(g.Class), g.XYXY[0], g.XYXY[1], g.XYXY[2], g.XYXY[3]})
			}
			doc.Images = append(doc.Images, im)
			s.Add(preds[i], truth[i])
		}
		docs = append(docs, doc)
		results = append(results, s.Results(names))
	}
	in, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/ultralytics_metrics.py")
	cmd.Stdin = bytes.NewReader(in)
	// A settings folder of its own: ultralytics' first run on a machine (it writes its settings
	// file and says so) every time.
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "YOLO_OFFLINE=true", "YOLO_AUTOINSTALL=false", "YOLO_CONFIG_DIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ultralytics reference: %v\n%s", err, stderr.String())
	}
	var wants []struct {
		Mean    [4]float64            `json:"mean"`
		Classes map[string][4]float64 `json:"classes"`
	}
	if err := json.Unmarshal(out, &wants); err != nil || len(wants) != len(seeds) {
		t.Fatalf("ultralytics reference output %q: %v", out, err)
	}
	for k, seed := range seeds {
		got, want := results[k], wants[k]
		check := func(what string, g, w [4]float64) {
			t.Helper()
			for k, label := range []string{"P", "R", "mAP50", "mAP50-95"} {
				if math.Abs(g[k]-w[k]) > 1e-9 {
					t.Errorf("seed %d %s %s = %.12f, ultralytics %.12f", seed, what, label, g[k], w[k])
				}
			}
		}
		check("all", [4]float64{got.P, got.R, got.MAP50, got.MAP5095}, want.Mean)
		if len(got.Classes) != len(want.Classes) {
			t.Fatalf("seed %d: %d classes, ultralytics %d", seed, len(got.Classes), len(want.Classes))
		}
		for _, c := range got.Classes {
			check("class "+c.Name, [4]float64{c.P, c.R, c.MAP50, c.MAP5095}, want.Classes[strconv.Itoa(c.Class)])
		}
		if got.MAP50 < 0.2 || got.MAP5095 >= got.MAP50 {
			t.Errorf("seed %d: the set should give a clear mAP50 above mAP50-95, got %.3f / %.3f", seed, got.MAP50, got.MAP5095)
		}
	}
}
