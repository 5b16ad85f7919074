package publish

import "testing"

// A crash (no close) never reuses a number: the next run starts past the
// persisted reservation, leaving a gap of at most seqBlock.
func TestSeqNeverReusedAfterCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := openSeqCounters(dir)
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
	s2, err := openSeqCounters(dir)
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
