package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/atomicfile"
	"github.com/stardetr/stardetr/pipeline"
)

// eventSnapshots keeps the best frame of each event as a JPEG with its box drawn, in
// <state_dir>/events/<id>.jpg, bounded in total size: when a new file does not fit, the
// oldest files go first, and are counted.
//
// Drawing, encoding and writing a JPEG (with its fsync) takes milliseconds, tens on an SD
// card: on the inference goroutine it took a storm of events from 65 to 5 frames/s (issue
// 23). So the pipeline's worker only copies the frame into a queue (save), and the snapshot
// goroutine (run; Close stops it) does the rest. Saves are bounded three ways, each drop
// counted: one event at most once a second (its first at once), all cameras together at most
// events.snapshot_max_per_second (by capture time), and at most snapshotQueue frames waiting,
// the oldest dropped for a new one. The frames in the queue are the memory this costs: at
// most snapshotQueue+1 copies of a camera frame, reused.
type eventSnapshots struct {
	dir   string
	max   int64
	log   *slog.Logger
	write func(path string, data []byte) error // atomicfile.Write; a test's slow disk

	// The rate bound's bucket; only save (the pipeline's worker) uses it.
	perSecond, tokens float64
	lastSave          time.Time

	removed atomic.Uint64
	written atomic.Uint64
	dropped [3]atomic.Uint64 // by snapDropReasons

	mu      sync.Mutex
	files   map[string]snapFile
	total   int64
	last    map[string]time.Time // by live event id: capture time of its last snapshot taken
	newest  time.Time            // the latest file time given, so that file times strictly increase
	queue   []*snapJob           // waiting for the snapshot goroutine, oldest first
	free    []*snapJob           // written or dropped: their frames are reused
	pending map[string]*pendingSnap
	closed  bool
	errLog  time.Time // when a write error was last logged
	wake    chan struct{}
	done    chan struct{}
	close   sync.Once
}

// snapJob is one snapshot to write: a copy of the frame, owned by the job.
type snapJob struct {
	id    string
	frame gocv.Mat
	label string
	box   [4]float32
}

// pendingSnap counts an event's snapshots queued or being written; done is closed when the
// last one is written or dropped.
type pendingSnap struct {
	n    int
	done chan struct{}
}

type snapFile struct {
	size    int64
	written time.Time
}

const (
	snapshotEvery = time.Second
	// snapshotQueue is how many snapshots wait for the disk at most: a storm drops the oldest.
	snapshotQueue = 4
	// snapshotWait is how long /events/<id>/snapshot.jpg waits for a snapshot still queued.
	snapshotWait = 5 * time.Second
)

const (
	snapDropRate  = iota // over events.snapshot_max_per_second
	snapDropQueue        // the oldest waiting, for a newer one
	snapDropError        // drawing, encoding or writing failed
)

var snapDropReasons = [3]string{"rate", "queue_full", "error"}

var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// openEventSnapshots loads what a previous run left in dir and starts the snapshot goroutine;
// Close stops it.
func openEventSnapshots(dir string, maxBytes int64, perSecond float64, log *slog.Logger) (*eventSnapshots, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("event snapshots: %w: make state_dir writable or set events.snapshot_max_mb: 0", err)
	}
	s := &eventSnapshots{dir: dir, max: maxBytes, log: log, write: atomicfile.Write,
		perSecond: perSecond, tokens: max(perSecond, 1),
		files: map[string]snapFile{}, last: map[string]time.Time{}, pending: map[string]*pendingSnap{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("event snapshots: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".jpg")
		if !ok || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s.files[id] = snapFile{size: info.Size(), written: info.ModTime()}
		s.total += info.Size()
		if info.ModTime().After(s.newest) {
			s.newest = info.ModTime()
		}
	}
	s.mu.Lock()
	s.trim(0)
	s.mu.Unlock()
	go s.run()
	return s, nil
}

// has says whether the event has a snapshot, written or on its way.
func (s *eventSnapshots) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[id]
	return ok || s.pending[id] != nil
}

// save queues a snapshot of the event from frame (owned by the caller, copied here), within
// the bounds. It runs on the pipeline's worker: it never waits for the disk.
func (s *eventSnapshots) save(id string, now time.Time, frame gocv.Mat, ev detection.Event) error {
	if frame.Empty() {
		return nil
	}
	if !eventIDPattern.MatchString(id) {
		return fmt.Errorf("event %s snapshot: id is not a file name", id)
	}
	s.mu.Lock()
	if last, seen := s.last[id]; s.closed || (seen && now.Sub(last) < snapshotEvery) {
		s.mu.Unlock()
		return nil
	}
	if !s.allow(now) {
		s.mu.Unlock()
		s.dropped[snapDropRate].Add(1)
		return nil
	}
	var job *snapJob
	if n := len(s.free); n > 0 {
		job, s.free = s.free[n-1], s.free[:n-1]
	} else {
		job = &snapJob{frame: gocv.NewMat()}
	}
	s.mu.Unlock()
	// The copy is the only per-snapshot cost left to the worker.
	err := frame.CopyTo(&job.frame)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.closed {
		s.free = append(s.free, job)
		if err != nil {
			return fmt.Errorf("event %s snapshot: copy the frame: %w", id, err)
		}
		return nil
	}
	job.id, job.label, job.box = id, fmt.Sprintf("%s #%d %.2f", ev.Label, ev.TrackID, ev.Score), ev.Box
	if len(s.queue) == snapshotQueue {
		old := s.queue[0]
		s.queue = slices.Delete(s.queue, 0, 1)
		s.finished(old)
		s.dropped[snapDropQueue].Add(1)
	}
	s.queue = append(s.queue, job)
	p := s.pending[id]
	if p == nil {
		p = &pendingSnap{done: make(chan struct{})}
		s.pending[id] = p
	}
	p.n++
	s.last[id] = now
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// allow takes a token of the events.snapshot_max_per_second bucket (one second's worth, at
// least one), refilled by capture time; s.mu is held.
func (s *eventSnapshots) allow(now time.Time) bool {
	if !s.lastSave.IsZero() {
		if d := now.Sub(s.lastSave).Seconds(); d > 0 {
			s.tokens = min(max(s.perSecond, 1), s.tokens+d*s.perSecond)
		}
	}
	if now.After(s.lastSave) {
		s.lastSave = now
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// finished ends a job that was written or dropped; s.mu is held.
func (s *eventSnapshots) finished(job *snapJob) {
	if p := s.pending[job.id]; p != nil {
		if p.n--; p.n == 0 {
			close(p.done)
			delete(s.pending, job.id)
		}
	}
	s.free = append(s.free, job)
}

// run is the snapshot goroutine: it writes the queued snapshots, oldest first, until Close.
func (s *eventSnapshots) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			<-s.wake
			continue
		}
		job := s.queue[0]
		s.queue = slices.Delete(s.queue, 0, 1)
		s.mu.Unlock()
		err := s.store(job)
		s.mu.Lock()
		s.finished(job)
		if err != nil {
			s.dropped[snapDropError].Add(1)
			if now := time.Now(); now.Sub(s.errLog) >= 10*time.Second {
				s.errLog = now
				s.log.Warn("event snapshot not kept", "err", err, "errors_total", s.dropped[snapDropError].Load())
			}
		}
		s.mu.Unlock()
	}
}

// Close stops the snapshot goroutine once it has written what is queued, and frees the
// frames. Later saves are ignored.
func (s *eventSnapshots) Close() {
	s.close.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, j := range s.free {
			_ = j.frame.Close()
		}
		s.free = nil
	})
}

// store draws, encodes and writes one snapshot, keeping the size bound; the disk is written
// without s.mu held, so that save and the HTTP server never wait for it.
func (s *eventSnapshots) store(job *snapJob) error {
	jpg, err := pipeline.AnnotatedJPEG(job.frame, []pipeline.Box{{Label: job.label, Box: job.box}})
	if err != nil {
		return fmt.Errorf("event %s snapshot: %w", job.id, err)
	}
	size := int64(len(jpg))
	s.mu.Lock()
	old := s.files[job.id]
	s.total -= old.size
	delete(s.files, job.id)
	s.trim(size)
	if size > s.max {
		s.mu.Unlock()
		return nil // larger than the whole budget: keep none
	}
	s.total += size // taken now, so that a restart's trim and this write agree
	s.mu.Unlock()

	path := filepath.Join(s.dir, job.id+".jpg")
	if err := s.write(path, jpg); err != nil {
		s.mu.Lock()
		s.total -= size
		s.mu.Unlock()
		return fmt.Errorf("event %s snapshot: %w", job.id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The file system's clock ticks coarsely (files written within one tick share a time),
	// so each file gets a time of its own, later than any before: a restart then sorts
	// them in the order they were written.
	written := time.Now()
	if !written.After(s.newest) {
		written = s.newest.Add(time.Microsecond)
	}
	if err := os.Chtimes(path, written, written); err != nil {
		s.log.Warn("event snapshot: cannot set its time; a restart may trim it out of order", "id", job.id, "err", err)
	}
	s.newest = written
	s.files[job.id] = snapFile{size: size, written: written}
	s.written.Add(1)
	return nil
}

// ended forgets the rate limit of an event that ended.
func (s *eventSnapshots) ended(id string) {
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
}

// trim removes the oldest files until need more bytes fit; s.mu is held.
func (s *eventSnapshots) trim(need int64) {
	if s.total+need <= s.max {
		return
	}
	ids := make([]string, 0, len(s.files))
	for id := range s.files {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := s.files[ids[i]].written, s.files[ids[j]].written
		if a.Equal(b) {
			return ids[i] < ids[j]
		}
		return a.Before(b)
	})
	for _, id := range ids {
		if s.total+need <= s.max {
			break
		}
		err := os.Remove(filepath.Join(s.dir, id+".jpg"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("event snapshot: cannot remove", "id", id, "err", err)
			continue
		}
		s.total -= s.files[id].size
		delete(s.files, id)
		s.removed.Add(1)
		s.log.Debug("event snapshot removed to keep events.snapshot_max_mb", "id", id, "removed_total", s.removed.Load())
	}
}

var (
	descSnapRemoved = prometheus.NewDesc("stardetr_event_snapshots_removed_total",
		"Event snapshots removed, oldest first, to keep events.snapshot_max_mb.", nil, nil)
	descSnapWritten = prometheus.NewDesc("stardetr_event_snapshots_written_total",
		"Event snapshots written.", nil, nil)
	descSnapDropped = prometheus.NewDesc("stardetr_event_snapshots_dropped_total",
		"Event snapshots not kept: reason=rate: over events.snapshot_max_per_second; reason=queue_full: the oldest waiting for the disk, for a newer one; reason=error: drawing, encoding or writing failed.",
		[]string{"reason"}, nil)
)

// collector exports the snapshots written, removed by the size bound and dropped.
func (s *eventSnapshots) collector() prometheus.Collector { return snapCollector{s} }

type snapCollector struct{ s *eventSnapshots }

func (c snapCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSnapRemoved
	ch <- descSnapWritten
	ch <- descSnapDropped
}

func (c snapCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descSnapRemoved, prometheus.CounterValue, float64(c.s.removed.Load()))
	ch <- prometheus.MustNewConstMetric(descSnapWritten, prometheus.CounterValue, float64(c.s.written.Load()))
	for i, r := range snapDropReasons {
		ch <- prometheus.MustNewConstMetric(descSnapDropped, prometheus.CounterValue, float64(c.s.dropped[i].Load()), r)
	}
}

// waitWritten waits, up to snapshotWait or until done, for an event's snapshot that is still
// on its way to the disk.
func (s *eventSnapshots) waitWritten(id string, done <-chan struct{}) {
	s.mu.Lock()
	p := s.pending[id]
	s.mu.Unlock()
	if p == nil {
		return
	}
	t := time.NewTimer(snapshotWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-done:
	case <-t.C:
	}
}

// open returns the snapshot file of an event.
func (s *eventSnapshots) open(id string) (*os.File, error) {
	if !eventIDPattern.MatchString(id) {
		return nil, fs.ErrNotExist
	}
	s.mu.Lock()
	_, ok := s.files[id]
	s.mu.Unlock()
	if !ok {
		return nil, fs.ErrNotExist
	}
	return os.Open(filepath.Join(s.dir, id+".jpg"))
}
