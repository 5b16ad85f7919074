package diskqueue_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

func payload(i int) []byte { return []byte(fmt.Sprintf("message-%06d", i)) }

// drain reads every live record in order and acknowledges it.
func drain(t *testing.T, q *diskqueue.Queue) []string {
	t.Helper()
	var out []string
	var buf []byte
	for {
		r, ok, err := q.ReadFrom(0, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, string(r.Data))
		q.Ack(r.ID)
	}
}

func TestAppendReadAckAcrossReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledge the first 40, leave 60 for the next run.
	var buf []byte
	id := uint64(0)
	for range 40 {
		r, ok, err := q.ReadFrom(id, buf)
		if err != nil || !ok {
			t.Fatalf("read: ok=%v err=%v", ok, err)
		}
		q.Ack(r.ID)
		id = r.ID + 1
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q, err = diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got := q.Recovered().Records; got != 60 {
		t.Fatalf("recovered %d records, want 60", got)
	}
	got := drain(t, q)
	if len(got) != 60 || got[0] != string(payload(40)) || got[59] != string(payload(99)) {
		t.Fatalf("after reopen got %d records, first %q last %q", len(got), got[0], got[len(got)-1])
	}
	// New appends continue after the old ids.
	if _, err := q.Append([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, q); len(got) != 1 || got[0] != "new" {
		t.Fatalf("got %q", got)
	}
}

func TestFullQueueDropsOldestFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 64 << 10
	q, err := diskqueue.Open(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rec := make([]byte, 1000-8) // 1000 bytes with the header: 65 fit in 64 KiB
	total := 0
	for i := range 200 {
		copy(rec, payload(i))
		n, err := q.Append(rec)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	st := q.Stats()
	if st.Bytes > limit {
		t.Fatalf("queue holds %d bytes, limit %d", st.Bytes, limit)
	}
	if int(st.Dropped) != total || total != 200-st.Records {
		t.Fatalf("dropped %d (reported %d), records %d", st.Dropped, total, st.Records)
	}
	got := drain(t, q)
	first := 200 - len(got)
	for i, g := range got {
		if want := string(payload(first + i)); g[:len(want)] != want {
			t.Fatalf("record %d is %q, want %q: not the newest in order", i, g[:len(want)], want)
		}
	}
	// Acknowledged segments are removed from disk.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) > 2 {
		t.Fatalf("%d segments left after draining: %v", len(segs), segs)
	}
	if _, err := q.Append(make([]byte, limit)); !errors.Is(err, diskqueue.ErrTooLarge) {
		t.Fatalf("oversized record: err=%v, want ErrTooLarge", err)
	}
}

func TestTornTailIsCut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash in the middle of a write: half a record at the tail.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	q, err = diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rec := q.Recovered()
	if rec.Records != 10 || rec.TruncatedBytes != 7 {
		t.Fatalf("recovery %+v, want 10 records and 7 bytes cut", rec)
	}
	if _, err := q.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	got := drain(t, q)
	if len(got) != 11 || got[10] != "after" {
		t.Fatalf("got %d records, last %q", len(got), got[len(got)-1])
	}
}

func TestUnsyncedHeadRedelivers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	r, _, _ := q.ReadFrom(0, nil)
	q.Ack(r.ID)
	// No Sync/Close: a crash. The acknowledged record comes again (at-least-once).
	q2, err := diskqueue.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if got := drain(t, q2); len(got) != 5 {
		t.Fatalf("after crash got %d records, want all 5 again", len(got))
	}
	_ = q.Close()
}

// One writer, one reader that acknowledges, and a syncer, at once (run with -race):
// the reader sees every record exactly once, in order.
func TestConcurrentAppendReadSync(t *testing.T) {
	t.Parallel()
	q, err := diskqueue.Open(t.TempDir(), 1<<20) // 64 KiB segments: many rotations
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// n records of 60 bytes (20-byte header) fit in the 1 MiB queue, so a reader that falls
	// behind never makes the writer drop.
	const n = 15000
	stop := make(chan struct{})
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		for {
			select {
			case <-stop:
				return
			default:
				if err := q.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		rec := make([]byte, 40)
		for i := range n {
			copy(rec, payload(i))
			if d, err := q.Append(rec); err != nil || d != 0 {
				t.Errorf("append %d: dropped %d, %v", i, d, err)
				return
			}
		}
	}()
	next := uint64(0)
	for i := 0; i < n; {
		r, ok, err := q.ReadFrom(next, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			<-q.Notify()
			continue
		}
		if want := string(payload(i)); string(r.Data[:len(want)]) != want {
			t.Fatalf("record %d is %q, want %q", i, r.Data[:len(want)], want)
		}
		q.Ack(r.ID)
		next = r.ID + 1
		i++
	}
	<-writeDone
	close(stop)
	<-syncDone
	if st := q.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("after draining: %+v", st)
	}
}
