package diskqueue_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// FuzzSegment opens a queue whose only segment holds arbitrary bytes (framed or garbage)
// and reads it all: Open either fails with an error or yields records in id order, each of
// which reads back; nothing panics. Seeds: testdata/fuzz/FuzzSegment.
// Run: go test -run '^$' -fuzz FuzzSegment ./publish/internal/diskqueue/
func FuzzSegment(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000000.seg"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		q, err := diskqueue.Open(dir, 1<<20)
		if err != nil {
			return
		}
		defer q.Close()
		rec := q.Recovered()
		got, last := 0, uint64(0)
		for {
			r, ok, err := q.ReadFrom(0, nil)
			var ce *diskqueue.CorruptError
			if errors.As(err, &ce) {
				t.Fatalf("record %d passed Open's check but not ReadFrom's", ce.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if got > 0 && r.ID <= last {
				t.Fatalf("record id %d after %d", r.ID, last)
			}
			last = r.ID
			got++
			q.Ack(r.ID)
		}
		if got != rec.Records {
			t.Fatalf("read %d records, Open found %d", got, rec.Records)
		}
		if _, err := q.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeHeader checks one record header against arbitrary bytes: a header it accepts
// describes a payload inside the buffer.
func FuzzDecodeHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, n, ok := diskqueue.DecodeHeader(data, 1<<20); ok && (n < 0 || 20+n > len(data)) {
			t.Fatalf("accepted a %d-byte payload in %d bytes", n, len(data))
		}
	})
}
