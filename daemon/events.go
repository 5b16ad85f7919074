package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/track"
)

// EventsConfig is the `events:` section: what every tracking camera's events share.
type EventsConfig struct {
	// UpdateInterval is the shortest time between two `update` events of one object that a
	// zone change did not cause; 0: updates on zone changes only.
	UpdateInterval time.Duration `mapstructure:"update_interval"`
	// MaxPerSecond bounds each camera's events, on average (pipeline.EventLimit): objects
	// beyond it are not announced, updates beyond it wait and coalesce; both are counted.
	MaxPerSecond float64 `mapstructure:"max_per_second"`
	// SnapshotMaxMB bounds the event snapshots under <state_dir>/events; 0 keeps none.
	SnapshotMaxMB int `mapstructure:"snapshot_max_mb"`
	// SnapshotMaxPerSecond bounds the snapshots written, all cameras together.
	SnapshotMaxPerSecond float64 `mapstructure:"snapshot_max_per_second"`
	// Recent is how many events /api/events remembers.
	Recent int `mapstructure:"recent"`
}

// DefaultEventsConfig returns the `events:` defaults.
func DefaultEventsConfig() EventsConfig {
	return EventsConfig{UpdateInterval: 10 * time.Second, MaxPerSecond: 20, SnapshotMaxMB: 100, SnapshotMaxPerSecond: 5, Recent: 200}
}

// Validate reports every problem, keys relative to the section.
func (c *EventsConfig) Validate() error {
	var l confcheck.List
	if c.UpdateInterval < 0 {
		l.Add("update_interval", "%s is negative: use 0 (zone changes only) or a duration such as 10s", c.UpdateInterval)
	}
	// NaN fails every comparison: the ranges are written so that it is out of them.
	if !(c.MaxPerSecond >= 1 && c.MaxPerSecond <= 10000) {
		l.Add("max_per_second", "%v is out of range: 1 to 10000 events per second and camera", c.MaxPerSecond)
	}
	if c.SnapshotMaxMB < 0 || c.SnapshotMaxMB > 1<<20 {
		l.Add("snapshot_max_mb", "%d is out of range: 0 (no snapshots) to 1048576", c.SnapshotMaxMB)
	}
	if !(c.SnapshotMaxPerSecond >= 0.1 && c.SnapshotMaxPerSecond <= 1000) {
		l.Add("snapshot_max_per_second", "%v is out of range: 0.1 to 1000 snapshots per second (set snapshot_max_mb: 0 for none)", c.SnapshotMaxPerSecond)
	}
	if c.Recent < 1 || c.Recent > 100000 {
		l.Add("recent", "%d is out of range: 1 to 100000 events", c.Recent)
	}
	return l.Err()
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

// newEventLimit returns the camera's event rate bound, or nil when it does not track.
func newEventLimit(c CameraConfig, ev EventsConfig) *pipeline.EventLimit {
	if !c.Track.Enabled {
		return nil
	}
	return pipeline.NewEventLimit(ev.MaxPerSecond)
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
		ev.ID = eventID(t.Camera, ev.ID)
		snapshot := ""
		if s.snaps != nil && s.snaps.has(ev.ID) {
			snapshot = snapshotPath(ev.ID)
		}
		msg, err := s.pub.PublishEvent(t.Camera, ev, snapshot)
		if err != nil {
			errs = append(errs, err)
		} else if s.recent != nil && msg != nil { // nil: dropped, counted by the publisher
			s.recent.add(ev.ID, t.Camera, msg)
		}
		if ev.Type == detection.EventEnd && s.snaps != nil {
			s.snaps.ended(ev.ID)
		}
		s.log.Info("event", "camera", t.Camera, "type", ev.Type, "id", ev.ID, "label", ev.Label, "zones", strings.Join(ev.Zones, ","))
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

// eventSnapshot serves /events/<id>/snapshot.jpg.
func (s *service) eventSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.sink.snaps == nil {
		http.Error(w, "event snapshots are off (events.snapshot_max_mb: 0)", http.StatusNotFound)
		return
	}
	// An event names its snapshot as soon as it is queued: wait for one still on its way.
	s.sink.snaps.waitWritten(id, r.Context().Done())
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
