package diskqueue_test

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// recordSize is the on-disk size of payload(i): a 20-byte header and 14 bytes.
const recordSize = 20 + 14

func onlySegment(t *testing.T, dir string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(segs)
	if len(segs) == 0 {
		t.Fatalf("no segment in %s", dir)
	}
	return segs[0]
}

// openFilled opens a 1 MiB queue in dir and appends payload(0) … payload(n-1).
func openFilled(t *testing.T, dir string, n int) *diskqueue.Queue {
	t.Helper()
	q, err := diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// One flipped byte in record 20 of 171 costs that record only, wherever in the record it is,
// and the segment's damage is reported with a count.
func TestCorruptRecordCostsOneRecord(t *testing.T) {
	t.Parallel()
	for _, where := range []struct {
		name string
		off  int64
	}{{"magic", 1}, {"id", 6}, {"length", 13}, {"checksum", 17}, {"payload", 25}} {
		t.Run(where.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			q := openFilled(t, dir, 171)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			seg := onlySegment(t, dir)
			flipByte(t, seg, 19*recordSize+where.off) // record 20, id 19

			q, err := diskqueue.Open(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			rec := q.Recovered()
			if rec.Records != 170 || len(rec.Damaged) != 1 || rec.Damaged[0].Records != 1 || rec.Damaged[0].Segment != seg || rec.TruncatedBytes != 0 {
				t.Fatalf("recovery %+v, want 170 records and one damaged record in %s", rec, seg)
			}
			got := drain(t, q)
			if len(got) != 170 {
				t.Fatalf("%d records delivered, want 170", len(got))
			}
			for i, j := 0, 0; i < 171; i++ {
				if i == 19 {
					continue
				}
				if got[j] != string(payload(i)) {
					t.Fatalf("record %d is %q, want %q", j, got[j], payload(i))
				}
				j++
			}
		})
	}
}

// A record damaged on disk while the queue is open is skipped with an error naming it; the
// records after it still come.
func TestRecordCorruptedWhileOpenIsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := openFilled(t, dir, 10)
	defer q.Close()
	flipByte(t, onlySegment(t, dir), 3*recordSize+25)
	var got []string
	var corrupt []uint64
	for {
		r, ok, err := q.ReadFrom(0, nil)
		var ce *diskqueue.CorruptError
		if errors.As(err, &ce) {
			corrupt = append(corrupt, ce.ID)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(r.Data))
		q.Ack(r.ID)
	}
	if len(got) != 9 || len(corrupt) != 1 || corrupt[0] != 3 || q.Stats().Corrupt != 1 {
		t.Fatalf("delivered %q, corrupt ids %v, stats %+v: want 9 records and id 3 corrupt", got, corrupt, q.Stats())
	}
}

// On a full file system with the broker away, Append keeps the newest records by dropping
// the oldest (counted), never failing; with the records taken and acknowledged as they come,
// the acknowledged space is reused, so a connected queue keeps accepting records on a disk
// that stays nearly full.
func TestFullFileSystemDropsOldestAndReclaims(t *testing.T) {
	t.Parallel()
	mnt := testenv.Tmpfs(t, 512<<10)
	qdir := filepath.Join(mnt, "queue")
	q, err := diskqueue.Open(qdir, 8<<20) // the limit is far above what the disk holds
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const n = 40000 // 40000 × 34 bytes = 1.36 MB on a 512 KiB disk
	dropped := 0
	for i := range n {
		d, err := q.Append(payload(i))
		if err != nil {
			t.Fatalf("append %d on a full disk: %v", i, err)
		}
		dropped += d
	}
	st := q.Stats()
	if dropped == 0 || uint64(dropped) != st.Dropped || st.Records+dropped != n {
		t.Fatalf("dropped %d, stats %+v: want drops counted and records+dropped = %d", dropped, st, n)
	}
	got := drain(t, q)
	if len(got) != st.Records || got[len(got)-1] != string(payload(n-1)) || got[0] != string(payload(n-len(got))) {
		t.Fatalf("kept %d records from %q to %q: want the newest, contiguous", len(got), got[0], got[len(got)-1])
	}

	// The disk stays nearly full (another program's file); a connected publisher appends,
	// sends and acknowledges with 40 records in flight: acknowledged bytes in the active
	// segment are reclaimed around the unacknowledged ones, and nothing is dropped.
	filler := testenv.Fill(t, mnt, "filler", 16<<10)
	var acked uint64
	for i := range 20000 {
		d, err := q.Append(payload(i))
		if err != nil || d != 0 {
			t.Fatalf("append %d with 40 in flight on a nearly full disk: dropped %d, %v", i, d, err)
		}
		if i < 40 {
			continue
		}
		r, ok, err := q.ReadFrom(acked, nil)
		if err != nil || !ok || string(r.Data) != string(payload(i-40)) {
			t.Fatalf("read back %d: %q %v %v", i-40, r.Data, ok, err)
		}
		q.Ack(r.ID)
		acked = r.ID + 1
	}
	if got := drain(t, q); len(got) != 40 || got[39] != string(payload(19999)) {
		t.Fatalf("in flight at the end: %d records, last %q; want the 40 newest", len(got), got[len(got)-1])
	}
	// Completely full: the queue lives on its own space, dropping the oldest.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testenv.Fill(t, mnt, "filler", 0)
	before := q.Stats().Dropped
	for i := range 20000 {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatalf("append %d on a full disk with a non-empty queue: %v", i, err)
		}
	}
	if q.Stats().Dropped == before {
		t.Fatalf("no drops on a completely full disk: %+v", q.Stats())
	}
	// A queue with nothing of its own to free refuses the record, counted.
	testenv.Fill(t, mnt, "filler2", 0)
	q2, err := diskqueue.Open(filepath.Join(mnt, "queue2"), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if _, err := q2.Append(payload(0)); !errors.Is(err, diskqueue.ErrNoSpace) || q2.Stats().NoSpace != 1 {
		t.Fatalf("append to an empty queue on a full disk: %v, stats %+v; want ErrNoSpace counted", err, q2.Stats())
	}
}
