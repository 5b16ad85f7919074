package publish

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A crash (no close) never reuses a number: the next run starts past the
// persisted reservation, leaving a gap of at most seqBlock.
func TestSeqNeverReusedAfterCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, err := openSeqCounters(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 2500 {
		n, err := s.take("cam")
		if err != nil {
			t.Fatal(err)
		}
		if n != uint64(i)+1 {
			t.Fatalf("take #%d = %d", i, n)
		}
		last = n
	}
	// Crash: s is abandoned without close.
	s2, _, err := openSeqCounters(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, err := s2.take("cam")
	if err != nil {
		t.Fatal(err)
	}
	if n <= last || n > last+seqBlock {
		t.Fatalf("after a crash the next seq is %d; last used %d: want in (%d, %d]", n, last, last, last+seqBlock)
	}
	if m, _ := s2.take("other"); m != 1 {
		t.Fatalf("a new camera starts at %d, want 1", m)
	}
}

// A corrupt counters file is moved aside and every camera, listed in it or not, continues
// from the clock in milliseconds; the floor survives a crash that follows.
func TestSeqRecoversFromCorruptFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, seqFile)
	if err := os.WriteFile(path, []byte(`{"version":1,"ne`), 0o640); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, rec, err := openSeqCounters(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Floor != uint64(now.UnixMilli()) {
		t.Fatalf("recovery %+v, want floor %d", rec, now.UnixMilli())
	}
	if b, err := os.ReadFile(rec.MovedTo); err != nil || string(b) != `{"version":1,"ne` {
		t.Fatalf("corrupt file not kept at %s: %q %v", rec.MovedTo, b, err)
	}
	if n, _ := s.take("cam"); n != rec.Floor {
		t.Fatalf("first number after recovery %d, want %d", n, rec.Floor)
	}
	// Crash without close: a camera that never published since still starts above the floor.
	s2, rec2, err := openSeqCounters(dir, now.Add(time.Second))
	if err != nil || rec2 != nil {
		t.Fatalf("reopen: %v, recovery %+v", err, rec2)
	}
	if n, _ := s2.take("other"); n != rec.Floor {
		t.Fatalf("a camera unknown to the file starts at %d, want the floor %d", n, rec.Floor)
	}
	if n, _ := s2.take("cam"); n <= rec.Floor {
		t.Fatalf("cam continues at %d, want above %d", n, rec.Floor)
	}
}
