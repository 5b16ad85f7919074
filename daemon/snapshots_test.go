package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/atomicfile"
	"github.com/stardetr/stardetr/internal/testenv"
)

// noiseFrame is a 320×240 frame of noise: JPEGs of a similar, large size.
func noiseFrame(t *testing.T) gocv.Mat {
	t.Helper()
	img := gocv.NewMatWithSize(240, 320, gocv.MatTypeCV8UC3)
	t.Cleanup(func() { img.Close() })
	gocv.RandU(&img, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	return img
}

var snapEvent = detection.Event{Label: "box", TrackID: 1, Score: 0.9, Box: [4]float32{10, 10, 60, 90}}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openSnaps opens event snapshots in dir, closed at the end of the test.
func openSnaps(t *testing.T, dir string, maxBytes int64, perSecond float64) *eventSnapshots {
	t.Helper()
	s, err := openEventSnapshots(dir, maxBytes, perSecond, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// saveWritten saves a snapshot and waits until the snapshot goroutine has written it.
func saveWritten(t *testing.T, s *eventSnapshots, id string, now time.Time, img gocv.Mat) {
	t.Helper()
	if err := s.save(id, now, img, snapEvent); err != nil {
		t.Fatal(err)
	}
	s.waitWritten(id, nil)
}

// Event snapshots stay within their size bound: the oldest go first and are counted, a
// restart finds what is there, and one event is rewritten at most once a second.
func TestEventSnapshotsBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	img := noiseFrame(t)
	now := time.Unix(1_800_000_000, 0)
	probe := openSnaps(t, filepath.Join(t.TempDir(), "probe"), 1<<30, 5)
	saveWritten(t, probe, "probe-1-1", now, img)
	size := probe.files["probe-1-1"].size
	if size == 0 {
		t.Fatal("the probe snapshot was not written")
	}

	s := openSnaps(t, dir, 3*size+size/2, 5) // room for three
	ids := []string{"front-1-1", "front-1-2", "front-1-3", "front-1-4", "front-1-5"}
	for i, id := range ids {
		saveWritten(t, s, id, now.Add(time.Duration(i)*time.Second), img)
	}
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(dir, id+".jpg"))
		if kept := err == nil; kept != (i >= 2) || s.has(id) != kept {
			t.Errorf("%s: on disk %v, listed %v; want only the three newest kept", id, err == nil, s.has(id))
		}
	}
	if s.removed.Load() != 2 || s.written.Load() != 5 {
		t.Errorf("removed %d, written %d; want 2 and 5", s.removed.Load(), s.written.Load())
	}
	// A second save of the same event within a second is skipped; after it, it rewrites.
	before := s.files["front-1-5"].written
	saveWritten(t, s, "front-1-5", now.Add(4500*time.Millisecond), img)
	if s.files["front-1-5"].written != before {
		t.Error("rewritten within a second")
	}
	saveWritten(t, s, "front-1-5", now.Add(5*time.Second), img)
	if s.files["front-1-5"].written == before {
		t.Error("not rewritten a second later")
	}
	// A restart with a smaller bound trims what it finds, oldest first.
	s2 := openSnaps(t, dir, size+size/2, 5)
	if s2.has("front-1-3") || s2.has("front-1-4") || !s2.has("front-1-5") || s2.removed.Load() != 2 {
		t.Errorf("after restart: 3 %v 4 %v 5 %v removed %d; want only 5 kept", s2.has("front-1-3"), s2.has("front-1-4"), s2.has("front-1-5"), s2.removed.Load())
	}
	if _, err := s2.open("../etc/passwd"); err == nil {
		t.Error("a path outside the folder was served")
	}
}

// events.snapshot_max_per_second bounds the snapshots of all events together, by capture
// time; the ones over it are counted.
func TestEventSnapshotsRate(t *testing.T) {
	img := noiseFrame(t)
	s := openSnaps(t, t.TempDir(), 1<<30, 2) // a bucket of 2, 2 a second
	t0 := time.Unix(1_800_000_000, 0)
	// 100 events in 0.99 s: the 2 in the bucket and 1 earned by 0.5 s pass (the next would
	// come at 1 s).
	for i := range 100 {
		if err := s.save(fmt.Sprintf("front-%d", i), t0.Add(time.Duration(i)*10*time.Millisecond), img, snapEvent); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.dropped[snapDropRate].Load(); got != 97 {
		t.Errorf("%d of 100 snapshots in 0.99 s dropped for the rate, want 97", got)
	}
	testenv.WaitFor(t, 10*time.Second, "the snapshots within the rate written", func() bool {
		return s.written.Load()+s.dropped[snapDropQueue].Load() == 3
	})
}

// blockingDisk is a write that waits until the test lets it go: a disk that stalls.
type blockingDisk struct {
	started chan string
	release chan struct{}
}

func (d blockingDisk) write(path string, data []byte) error {
	d.started <- filepath.Base(path)
	<-d.release
	return atomicfile.Write(path, data)
}

// A disk that stalls does not stall the pipeline's worker: save returns at once, the queue
// keeps the newest snapshotQueue snapshots, the oldest are dropped and counted, and what is
// queued is written once the disk moves again.
func TestEventSnapshotsSlowDisk(t *testing.T) {
	img := noiseFrame(t)
	s := openSnaps(t, t.TempDir(), 1<<30, 1000)
	disk := blockingDisk{started: make(chan string, 100), release: make(chan struct{})}
	s.write = disk.write
	t0 := time.Unix(1_800_000_000, 0)
	if err := s.save("front-0", t0, img, snapEvent); err != nil {
		t.Fatal(err)
	}
	if got := <-disk.started; got != "front-0.jpg" {
		t.Fatalf("first write %s", got)
	}
	// The writer is stuck on front-0; twenty more come, each save returning at once.
	const more = 20
	for i := 1; i <= more; i++ {
		done := make(chan error, 1)
		go func() {
			done <- s.save(fmt.Sprintf("front-%d", i), t0.Add(time.Duration(i)*time.Millisecond), img, snapEvent)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("save %d waited for the stalled disk", i)
		}
	}
	if got, want := s.dropped[snapDropQueue].Load(), uint64(more-snapshotQueue); got != want {
		t.Errorf("%d snapshots dropped from the queue, want %d", got, want)
	}
	if !s.has("front-20") || s.has("front-1") {
		t.Errorf("listed: newest %v, oldest dropped %v; want the newest only", s.has("front-20"), s.has("front-1"))
	}
	close(disk.release)
	testenv.WaitFor(t, 10*time.Second, "the queued snapshots written", func() bool { return s.written.Load() == 1+snapshotQueue })
	for i := 0; i <= more; i++ {
		_, err := os.Stat(filepath.Join(s.dir, fmt.Sprintf("front-%d.jpg", i)))
		if kept := i == 0 || i > more-snapshotQueue; kept != (err == nil) {
			t.Errorf("front-%d on disk: %v, want %v", i, err == nil, kept)
		}
	}
}

// Close stops the snapshot goroutine after writing what is queued; saves after it are
// ignored, and nothing of it keeps running.
func TestEventSnapshotsCloseStopsWriter(t *testing.T) {
	img := noiseFrame(t)
	before := runtime.NumGoroutine()
	s, err := openEventSnapshots(t.TempDir(), 1<<30, 1000, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if err := s.save(fmt.Sprintf("front-%d", i), t0, img, snapEvent); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s.written.Load() != 3 {
		t.Errorf("Close returned with %d of 3 queued snapshots written", s.written.Load())
	}
	select {
	case <-s.done:
	default:
		t.Fatal("the snapshot goroutine still runs after Close")
	}
	if err := s.save("front-9", t0.Add(time.Hour), img, snapEvent); err != nil || s.has("front-9") {
		t.Errorf("save after Close: %v, listed %v; want it ignored", err, s.has("front-9"))
	}
	s.Close() // twice is fine
	testenv.WaitFor(t, 5*time.Second, "the goroutine count back to where it was", func() bool { return runtime.NumGoroutine() <= before })
}
