package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/track"
)

// Event snapshots stay within their size bound: the oldest go first and are counted, a
// restart finds what is there, and one event is rewritten at most once a second.
func TestEventSnapshotsBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	img := gocv.NewMatWithSize(240, 320, gocv.MatTypeCV8UC3)
	defer img.Close()
	gocv.RandU(&img, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0)) // noise: JPEGs of a similar, large size
	ev := track.Event{Label: "box", TrackID: 1, Score: 0.9, Box: [4]float32{10, 10, 60, 90}}

	probe, err := openEventSnapshots(filepath.Join(t.TempDir(), "probe"), 1<<30, log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	if err := probe.save("probe-1-1", now, img, ev); err != nil {
		t.Fatal(err)
	}
	size := probe.files["probe-1-1"].size

	s, err := openEventSnapshots(dir, 3*size+size/2, log) // room for three
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"front-1-1", "front-1-2", "front-1-3", "front-1-4", "front-1-5"}
	for i, id := range ids {
		if err := s.save(id, now.Add(time.Duration(i)*time.Second), img, ev); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(dir, id+".jpg"))
		if kept := err == nil; kept != (i >= 2) || s.has(id) != kept {
			t.Errorf("%s: on disk %v, listed %v; want only the three newest kept", id, err == nil, s.has(id))
		}
	}
	if s.removed.Load() != 2 {
		t.Errorf("removed %d, want 2", s.removed.Load())
	}
	// A second save of the same event within a second is skipped; after it, it rewrites.
	before := s.files["front-1-5"].written
	if err := s.save("front-1-5", now.Add(4500*time.Millisecond), img, ev); err != nil || s.files["front-1-5"].written != before {
		t.Errorf("rewritten within a second (%v)", err)
	}
	// A restart with a smaller bound trims what it finds, oldest first.
	s2, err := openEventSnapshots(dir, size+size/2, log)
	if err != nil {
		t.Fatal(err)
	}
	if s2.has("front-1-3") || s2.has("front-1-4") || !s2.has("front-1-5") || s2.removed.Load() != 2 {
		t.Errorf("after restart: 3 %v 4 %v 5 %v removed %d; want only 5 kept", s2.has("front-1-3"), s2.has("front-1-4"), s2.has("front-1-5"), s2.removed.Load())
	}
	if _, err := s2.open("../etc/passwd"); err == nil {
		t.Error("a path outside the folder was served")
	}
}
