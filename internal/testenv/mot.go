package testenv

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/srctree"
)

//go:embed motmetrics.py
var motmetricsScript string

// MOTBox is one box of a multi-object-tracking sequence: ground truth (GT) or a tracker's
// hypothesis, with its identity and class, in pixels.
type MOTBox struct {
	Frame  int
	GT     bool
	ID     int
	Class  int
	X1, Y1 float64
	X2, Y2 float64
}

// MOTMetrics computes the CLEAR MOT and identity metrics of a sequence with py-motmetrics (the
// version of scripts/versions.env, installed by scripts/setup), matching at IoU ≥ 0.5 between
// boxes of one class: num_objects, num_predictions, num_misses, num_false_positives,
// num_switches, mota, idf1, idtp. Frames without any box are not evaluated; boxes go through
// 4 decimals.
func MOTMetrics(t testing.TB, boxes []MOTBox) map[string]float64 {
	t.Helper()
	root := RepoRoot(t)
	v := srctree.Pinned(root, "MOTMETRICS_VERSION")
	if v == "" {
		t.Fatal("testenv: scripts/versions.env names no MOTMETRICS_VERSION")
	}
	dir := filepath.Join(root, "build", "pydeps", "motmetrics-"+v)
	if _, err := os.Stat(filepath.Join(dir, "motmetrics")); err != nil {
		t.Fatalf("testenv: py-motmetrics %s is not installed in %s: run scripts/setup (make test runs it)", v, dir)
	}
	var in strings.Builder
	for _, b := range boxes {
		kind := "h"
		if b.GT {
			kind = "g"
		}
		fmt.Fprintf(&in, "%d %s %d %d %.4f %.4f %.4f %.4f\n", b.Frame, kind, b.ID, b.Class, b.X1, b.Y1, b.X2, b.Y2)
	}
	cmd := exec.Command(Python(), "-c", motmetricsScript)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
	cmd.Stdin = strings.NewReader(in.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: py-motmetrics: %v\n%s", err, stderr.String())
	}
	var m map[string]float64
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("testenv: py-motmetrics output %q: %v", out, err)
	}
	return m
}
