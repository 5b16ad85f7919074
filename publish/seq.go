package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stardetr/stardetr/internal/atomicfile"
)

// seqBlock is how many sequence numbers are reserved on disk ahead of use.
// After a crash a camera's seq jumps by at most this much (a visible gap);
// a number is never handed out twice.
const seqBlock = 1000

const (
	seqFile  = "mqtt-seq.json"
	queueDir = "mqtt-queue"
)

// seqFileFormat is the on-disk form: for each camera, the first number that
// is safe to use after a restart; Floor, set after a corrupt file was moved
// aside, is the first number for cameras the file does not list.
type seqFileFormat struct {
	Version int               `json:"version"`
	Next    map[string]uint64 `json:"next"`
	Floor   uint64            `json:"floor,omitempty"`
}

// seqCounters hands out per-camera message numbers, starting at 1.
type seqCounters struct {
	mu       sync.Mutex
	path     string
	floor    uint64            // no camera gets a number below it
	next     map[string]uint64 // next number to hand out
	reserved map[string]uint64 // numbers below this may have been used (persisted)
}

// seqRecovery says how a corrupt counters file was replaced.
type seqRecovery struct {
	MovedTo string // where the corrupt file now is
	Floor   uint64 // numbering continues from here for every camera
	Reason  error
}

// seqFloor is the first number safe to hand out when the counters are lost: the wall clock in
// milliseconds since 1970. A camera's numbers start at 1 (or at an earlier floor) and grow by
// one per message, plus at most seqBlock per crash; as long as a camera averaged fewer than
// 1000 messages per second since its numbering began — detections come at most once per
// frame — every number it used is below the current time in milliseconds. A clock that is
// not set (no RTC, no NTP yet) breaks this; openSeqCounters warns about such a clock.
func seqFloor(now time.Time) uint64 { return uint64(max(now.UnixMilli(), 1)) }

// plausibleClock is a date before which the wall clock cannot be right (this code is newer).
var plausibleClock = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// readSeqFile parses a counters file.
func readSeqFile(path string) (seqFileFormat, error) {
	var f seqFileFormat
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %w", errCorruptSeq, err)
	}
	if f.Version != 1 || f.Next == nil {
		return f, fmt.Errorf("%w: version %d, counters present %t", errCorruptSeq, f.Version, f.Next != nil)
	}
	return f, nil
}

var errCorruptSeq = errors.New("not a valid counters file")

// openSeqCounters loads the counters in dir. A corrupt file is moved aside to
// mqtt-seq.json.corrupt-<time> and numbering continues from seqFloor, persisted at once; the
// returned recovery says so (nil when the file was fine or absent).
func openSeqCounters(dir string, now time.Time) (*seqCounters, *seqRecovery, error) {
	s := &seqCounters{path: filepath.Join(dir, seqFile), next: map[string]uint64{}, reserved: map[string]uint64{}}
	f, err := readSeqFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil, nil
	case errors.Is(err, errCorruptSeq):
		// Starting again at 1 would reuse numbers that subscribers have seen: continue from a
		// number above any that can have been used, and keep the old file for inspection.
		rec := &seqRecovery{MovedTo: s.path + ".corrupt-" + now.UTC().Format("20060102T150405.000Z"), Floor: seqFloor(now), Reason: err}
		if err := os.Rename(s.path, rec.MovedTo); err != nil {
			return nil, nil, fmt.Errorf("message counters %s are corrupt; moving them aside: %w", s.path, err)
		}
		s.floor = rec.Floor
		if err := s.persist(s.reserved); err != nil {
			return nil, nil, err
		}
		return s, rec, nil
	case err != nil:
		return nil, nil, fmt.Errorf("read message counters: %w", err)
	}
	s.floor = f.Floor
	for cam, n := range f.Next {
		s.next[cam] = n
		s.reserved[cam] = n
	}
	return s, nil, nil
}

// take returns the camera's next number, persisting a new reservation first
// when the current one is used up.
func (s *seqCounters) take(camera string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := max(s.next[camera], s.floor, 1)
	if n >= s.reserved[camera] {
		old := s.reserved[camera]
		s.reserved[camera] = n + seqBlock
		if err := s.persist(s.reserved); err != nil {
			s.reserved[camera] = old
			return 0, err
		}
	}
	s.next[camera] = n + 1
	return n, nil
}

// close persists the exact next numbers, so a clean restart leaves no gap.
func (s *seqCounters) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.next) == 0 {
		return nil
	}
	return s.persist(s.next)
}

func (s *seqCounters) persist(m map[string]uint64) error {
	b, err := json.Marshal(seqFileFormat{Version: 1, Next: m, Floor: s.floor})
	if err != nil {
		return fmt.Errorf("encode message counters: %w", err)
	}
	if err := writeSeqFile(s.path, b); err != nil {
		return fmt.Errorf("persist message counters: %w", err)
	}
	return nil
}

// writeSeqFile replaces the counters file durably: a reused seq after a power loss would
// look like a duplicate rather than a gap.
func writeSeqFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return err
	}
	return atomicfile.Sync(filepath.Dir(path))
}
