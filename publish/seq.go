package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/stardetr/stardetr/internal/atomicfile"
)

// seqBlock is how many sequence numbers are reserved on disk ahead of use.
// After a crash a camera's seq jumps by at most this much (a visible gap);
// a number is never handed out twice.
const seqBlock = 1000

const seqFile = "mqtt-seq.json"

// seqFileFormat is the on-disk form: for each camera, the first number that
// is safe to use after a restart.
type seqFileFormat struct {
	Version int               `json:"version"`
	Next    map[string]uint64 `json:"next"`
}

// seqCounters hands out per-camera message numbers, starting at 1.
type seqCounters struct {
	mu       sync.Mutex
	path     string
	next     map[string]uint64 // next number to hand out
	reserved map[string]uint64 // numbers below this may have been used (persisted)
}

func openSeqCounters(dir string) (*seqCounters, error) {
	s := &seqCounters{path: filepath.Join(dir, seqFile), next: map[string]uint64{}, reserved: map[string]uint64{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read message counters: %w", err)
	}
	var f seqFileFormat
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		// Refuse to guess: starting again at 1 would reuse numbers.
		return nil, fmt.Errorf("message counters %s are corrupt (%v): move it away to restart numbering at 1", s.path, err)
	}
	for cam, n := range f.Next {
		s.next[cam] = n
		s.reserved[cam] = n
	}
	return s, nil
}

// take returns the camera's next number, persisting a new reservation first
// when the current one is used up.
func (s *seqCounters) take(camera string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := max(s.next[camera], 1)
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
	b, err := json.Marshal(seqFileFormat{Version: 1, Next: m})
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
	return atomicfile.SyncDir(filepath.Dir(path))
}
