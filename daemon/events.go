package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/atomicfile"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/track"
)

// EventsConfig is the `events:` section: what every tracking camera's events share.
type EventsConfig struct {
	// UpdateInterval is the shortest time between two `update` events of one object that a
	// zone change did not cause; 0: updates on zone changes only.
	UpdateInterval time.Duration `mapstructure:"update_interval"`
	// SnapshotMaxMB bounds the event snapshots under <state_dir>/events; 0 keeps none.
	SnapshotMaxMB int `mapstructure:"snapshot_max_mb"`
	// Recent is how many events /api/events remembers.
	Recent int `mapstructure:"recent"`
}

// DefaultEventsConfig returns the `events:` defaults.
func DefaultEventsConfig() EventsConfig {
	return EventsConfig{UpdateInterval: 10 * time.Second, SnapshotMaxMB: 100, Recent: 200}
}

// Validate reports every problem, keys relative to the section.
func (c *EventsConfig) Validate() error {
	var errs []error
	if c.UpdateInterval < 0 {
		errs = append(errs, fmt.Errorf("update_interval: %s is negative: use 0 (zone changes only) or a duration such as 10s", c.UpdateInterval))
	}
	if c.SnapshotMaxMB < 0 || c.SnapshotMaxMB > 1<<20 {
		errs = append(errs, fmt.Errorf("snapshot_max_mb: %d is out of range: 0 (no snapshots) to 1048576", c.SnapshotMaxMB))
	}
	if c.Recent < 1 || c.Recent > 100000 {
		errs = append(errs, fmt.Errorf("recent: %d is out of range: 1 to 100000 events", c.Recent))
	}
	return errors.Join(errs...)
}

// checkZoneClasses reports zone classes that name no class of the model.
func checkZoneClasses(cams []CameraConfig, labels []string) error {
	var l confcheck.List
	for i := range cams {
		l.Include(fmt.Sprintf("cameras[%d]", i), cams[i].Zones.CheckClasses(labels))
	}
	return l.Err()
}

// newScene returns the camera's tracking scene, or nil when it does not track.
func newScene(c CameraConfig, ev EventsConfig, labels []string) *track.Scene {
	if !c.Track.Enabled {
		return nil
	}
	tc := c.Track
	tc.UpdateInterval = ev.UpdateInterval
	return track.NewScene(tc, c.Zones, labels)
}

// eventID makes a scene's event id (unique per camera) unique per device.
func eventID(camera, id string) string { return camera + "-" + id }

// PublishTracked publishes a frame's events and changed counts, after keeping snapshots of
// the objects whose best score rose, so that an event names its snapshot.
func (s *messageSink) PublishTracked(t *pipeline.Tracked) error {
	var errs []error
	if s.snaps != nil {
		for _, b := range t.Best {
			if err := s.snaps.save(eventID(t.Camera, b.ID), t.Time, t.Frame, b); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ev := range t.Events {
		pe := publish.Event{Camera: t.Camera, Type: ev.Type, ID: eventID(t.Camera, ev.ID), TrackID: ev.TrackID,
			ClassID: ev.ClassID, Label: ev.Label, Score: float64(ev.Score), Zones: ev.Zones, EnteredZones: ev.EnteredZones,
			Start: ev.Start, End: ev.End, Frames: ev.Frames, Stationary: ev.Stationary}
		for i, v := range ev.Box {
			pe.Box[i] = float64(v)
		}
		if s.snaps != nil && s.snaps.has(pe.ID) {
			pe.Snapshot = snapshotPath(pe.ID)
		}
		msg, err := s.pub.PublishEvent(pe)
		if err != nil {
			errs = append(errs, err)
		} else if s.recent != nil {
			s.recent.add(pe.ID, t.Camera, msg)
		}
		if ev.Type == track.EventEnd && s.snaps != nil {
			s.snaps.ended(pe.ID)
		}
		s.log.Info("event", "camera", t.Camera, "type", ev.Type, "id", pe.ID, "label", ev.Label, "zones", strings.Join(ev.Zones, ","))
	}
	for _, c := range t.Counts {
		if err := s.pub.PublishCount(t.Camera, c.Zone, c.Label, c.N); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// snapshotPath is where the HTTP server serves an event's snapshot.
func snapshotPath(id string) string { return "/events/" + id + "/snapshot.jpg" }

// recentEvents remembers the latest message of each of the last n events for /api/events:
// exactly what was published on MQTT (schema events.v1.json).
type recentEvents struct {
	mu   sync.Mutex
	n    int
	list []recentEvent // oldest first; one entry per event id
}

type recentEvent struct {
	id, camera string
	msg        json.RawMessage
}

func (r *recentEvents) add(id, camera string, msg json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = slices.DeleteFunc(r.list, func(x recentEvent) bool { return x.id == id })
	r.list = append(r.list, recentEvent{id, camera, msg})
	if len(r.list) > r.n {
		r.list = slices.Delete(r.list, 0, len(r.list)-r.n)
	}
}

// latest returns up to limit events of camera (all cameras when empty), newest first.
func (r *recentEvents) latest(camera string, limit int) []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []json.RawMessage{}
	for i := len(r.list) - 1; i >= 0 && len(out) < limit; i-- {
		if camera == "" || r.list[i].camera == camera {
			out = append(out, r.list[i].msg)
		}
	}
	return out
}

// eventSnapshots keeps the best frame of each event as a JPEG with its box drawn, in
// <state_dir>/events/<id>.jpg, bounded in total size: when a new file does not fit, the
// oldest files go first, and are counted. A JPEG costs milliseconds, so one event writes at
// most one a second (and its first at once).
type eventSnapshots struct {
	dir     string
	max     int64
	log     *slog.Logger
	removed atomic.Uint64

	mu     sync.Mutex
	files  map[string]snapFile
	total  int64
	last   map[string]time.Time // by live event id: when its snapshot was last written
	newest time.Time            // the latest file time given, so that file times strictly increase
}

type snapFile struct {
	size    int64
	written time.Time
}

const snapshotEvery = time.Second

var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// openEventSnapshots loads what a previous run left in dir.
func openEventSnapshots(dir string, maxBytes int64, log *slog.Logger) (*eventSnapshots, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("event snapshots: %w: make state_dir writable or set events.snapshot_max_mb: 0", err)
	}
	s := &eventSnapshots{dir: dir, max: maxBytes, log: log, files: map[string]snapFile{}, last: map[string]time.Time{}}
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
	defer s.mu.Unlock()
	s.trim(0)
	return s, nil
}

func (s *eventSnapshots) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[id]
	return ok
}

// save writes the event's snapshot from frame (owned by the caller), rate-limited per event.
func (s *eventSnapshots) save(id string, now time.Time, frame gocv.Mat, ev track.Event) error {
	s.mu.Lock()
	last, seen := s.last[id]
	s.mu.Unlock()
	if (seen && now.Sub(last) < snapshotEvery) || frame.Empty() {
		return nil
	}
	label := fmt.Sprintf("%s #%d %.2f", ev.Label, ev.TrackID, ev.Score)
	jpg, err := pipeline.AnnotatedJPEG(frame, []pipeline.Box{{Label: label, Box: ev.Box}})
	if err != nil {
		return fmt.Errorf("event %s snapshot: %w", id, err)
	}
	if !eventIDPattern.MatchString(id) {
		return fmt.Errorf("event %s snapshot: id is not a file name", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[id] = now
	old := s.files[id]
	s.total -= old.size
	delete(s.files, id)
	s.trim(int64(len(jpg)))
	if int64(len(jpg)) > s.max {
		return nil // larger than the whole budget: keep none
	}
	path := filepath.Join(s.dir, id+".jpg")
	if err := atomicfile.Write(path, jpg); err != nil {
		return fmt.Errorf("event %s snapshot: %w", id, err)
	}
	// The file system's clock ticks coarsely (files written within one tick share a time),
	// so each file gets a time of its own, later than any before: a restart then sorts
	// them in the order they were written.
	written := time.Now()
	if !written.After(s.newest) {
		written = s.newest.Add(time.Microsecond)
	}
	if err := os.Chtimes(path, written, written); err != nil {
		s.log.Warn("event snapshot: cannot set its time; a restart may trim it out of order", "id", id, "err", err)
	}
	s.newest = written
	s.files[id] = snapFile{size: int64(len(jpg)), written: written}
	s.total += int64(len(jpg))
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

// collector exports how many snapshots the size bound removed.
func (s *eventSnapshots) collector() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "stardetr_event_snapshots_removed_total",
		Help: "Event snapshots removed, oldest first, to keep events.snapshot_max_mb.",
	}, func() float64 { return float64(s.removed.Load()) })
}

// open returns the snapshot file of an event.
func (s *eventSnapshots) open(id string) (*os.File, error) {
	if !eventIDPattern.MatchString(id) || !s.has(id) {
		return nil, fs.ErrNotExist
	}
	return os.Open(filepath.Join(s.dir, id+".jpg"))
}

// applyRetained publishes the running configuration's retained topics and deletes those of
// removed cameras and zones; a failure is logged, not fatal: detections still flow.
func (s *service) applyRetained() {
	if err := publishRetained(&s.cfg, s.deviceID, s.det.Info().Model, s.labels, s.pub); err != nil {
		s.log.Error("retained topics (counts, Home Assistant discovery)", "err", err)
	}
}

// eventSnapshot serves /events/<id>/snapshot.jpg.
func (s *service) eventSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.sink.snaps == nil {
		http.Error(w, "event snapshots are off (events.snapshot_max_mb: 0)", http.StatusNotFound)
		return
	}
	f, err := s.sink.snaps.open(id)
	if err != nil {
		http.Error(w, fmt.Sprintf("no snapshot of event %q (unknown, or removed to keep events.snapshot_max_mb)", id), http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "image/jpeg")
	_, _ = io.Copy(w, f)
}

// apiEvents serves /api/events?camera=&limit= : the latest message of each recent event,
// newest first. A snapshot it names may have been removed since to keep
// events.snapshot_max_mb.
func (s *service) apiEvents(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			http.Error(w, fmt.Sprintf("limit=%q: give a number from 1 to 10000", v), http.StatusBadRequest)
			return
		}
		limit = n
	}
	out := s.sink.recent.latest(r.URL.Query().Get("camera"), limit)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
