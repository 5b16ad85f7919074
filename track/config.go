// Package track turns per-frame detections into tracked objects, zone occupancy and events:
// a ByteTrack-style tracker (high- then low-score association by IoU, a constant-velocity
// Kalman filter per track), polygon zones tested by the bottom centre of each box, and an
// event lifecycle (new, update, end) with per-zone counts. It knows detections and time, not
// cameras, frames or MQTT: one Scene serves one camera.
package track

import (
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
)

// Config is the `cameras[].track` section.
type Config struct {
	// Enabled turns tracking, zones and events on for the camera.
	Enabled bool `mapstructure:"enabled"`
	// MinHits is how many consecutive frames a new track must be matched before it is
	// confirmed (gets an id in the detections message and a `new` event).
	MinHits int `mapstructure:"min_hits"`
	// MaxAge is how many frames a confirmed track may go unmatched before it ends.
	MaxAge int `mapstructure:"max_age"`
	// IOU is the least intersection over union between a track's predicted box and a
	// detection for the two to be associated.
	IOU float64 `mapstructure:"iou"`
	// High is the score from which a detection is associated first and may start a track.
	High float64 `mapstructure:"high"`
	// Low is the least score of a detection used at all: those in [Low, High) only keep
	// existing tracks alive (ByteTrack's second association), they never start one.
	Low float64 `mapstructure:"low"`
	// Stationary decides when a confirmed object has stopped (a parked car): it then gets one
	// `update` event saying so and no periodic ones until it moves again or ends.
	Stationary StationaryConfig `mapstructure:"stationary"`
	// UpdateInterval is the shortest time between two `update` events of one track that are
	// not caused by a zone change; 0 sends updates on zone changes only. It is not a key of
	// this section: the daemon sets it from `events.update_interval`.
	UpdateInterval time.Duration `mapstructure:"-"`
}

// StationaryConfig is the `track.stationary` section.
type StationaryConfig struct {
	// IOU is the least intersection over union between an object's box and the box where it
	// stopped for the object to count as not having moved.
	IOU float64 `mapstructure:"iou"`
	// After is how long an object must stay put to become stationary; 0: never.
	After time.Duration `mapstructure:"after"`
}

// DefaultConfig returns the defaults documented in the README (tracking off).
func DefaultConfig() Config {
	return Config{MinHits: 3, MaxAge: 30, IOU: 0.3, High: 0.5, Low: 0.1,
		Stationary: StationaryConfig{IOU: 0.9, After: 30 * time.Second}}
}

// Validate reports every invalid value, each naming its key relative to the section
// (e.g. "min_hits"); the caller prefixes the section's own path.
func (c *Config) Validate() error {
	var l confcheck.List
	if c.MinHits < 1 || c.MinHits > 100 {
		l.Add("min_hits", "%d is out of range: 1 to 100 frames", c.MinHits)
	}
	if c.MaxAge < 1 || c.MaxAge > 10000 {
		l.Add("max_age", "%d is out of range: 1 to 10000 frames", c.MaxAge)
	}
	unit := func(key string, v float64, lo float64) {
		if math.IsNaN(v) || v < lo || v > 1 {
			l.Add(key, "%v is out of range: %v to 1", v, lo)
		}
	}
	unit("iou", c.IOU, 0.01)
	unit("high", c.High, 0)
	unit("low", c.Low, 0)
	if c.Low > c.High {
		l.Add("low", "%v is above high %v: low must be ≤ high", c.Low, c.High)
	}
	unit("stationary.iou", c.Stationary.IOU, 0.01)
	if c.Stationary.After < 0 {
		l.Add("stationary.after", "%s is negative: use 0 (never stationary) or a duration such as 30s", c.Stationary.After)
	}
	return l.Err()
}

// AllZone is the zone name of the whole-frame counts (`<camera>/all/<label>`); no zone may
// take it.
const AllZone = "all"

// namePattern is what a zone name may be: it becomes an MQTT topic level and part of Home
// Assistant ids, so no '/', '+', '#' or spaces.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Zone is one entry of `cameras[].zones`.
type Zone struct {
	// Name identifies the zone in events and count topics.
	Name string `mapstructure:"name"`
	// Polygon lists the corners as [x, y] fractions of the frame's width and height
	// (0..1, origin top left), so a resolution change keeps the zone where it was.
	Polygon [][]float64 `mapstructure:"polygon"`
	// Classes are the labels counted in the zone; empty: every label.
	Classes []string `mapstructure:"classes"`
	// Inertia is how many consecutive frames an object's bottom centre must be inside (to
	// enter) or outside (to leave) before its zone membership changes: it keeps a box that
	// jitters on the border from flapping.
	Inertia int `mapstructure:"inertia"`
	// Loiter is how long an object must have been inside before it counts as in the zone;
	// 0: as soon as Inertia allows.
	Loiter time.Duration `mapstructure:"loiter"`
}

// DefaultZone returns a zone's defaults; name and polygon come from the file.
func DefaultZone() Zone { return Zone{Inertia: 3} }

// Zones is the `cameras[].zones` list.
type Zones []Zone

// Validate reports every invalid zone, each naming its key relative to the camera
// (e.g. "zones[1].polygon[2]").
func (zs Zones) Validate() error {
	var l confcheck.List
	seen := map[string]int{}
	for i := range zs {
		z := &zs[i]
		key := fmt.Sprintf("zones[%d]", i)
		switch {
		case z.Name == "":
			l.Add(key+".name", "is empty: every zone needs a name (letters, digits, '_', '-', '.')")
		case !namePattern.MatchString(z.Name):
			l.Add(key+".name", "%q: use letters, digits, '_', '-' and '.' only, starting with a letter or digit (it becomes an MQTT topic level: no '/', '+', '#')", z.Name)
		case z.Name == AllZone:
			l.Add(key+".name", "%q is reserved for the whole-frame counts: pick another name", z.Name)
		}
		if j, dup := seen[z.Name]; dup && z.Name != "" {
			l.Add(key+".name", "%q is already the name of zones[%d]: names must be unique per camera", z.Name, j)
		}
		seen[z.Name] = i
		validatePolygon(&l, key+".polygon", z.Polygon)
		for j, c := range z.Classes {
			if c == "" {
				l.Add(fmt.Sprintf("%s.classes[%d]", key, j), "is empty: give a label of the model, e.g. person")
			}
		}
		if z.Inertia < 1 || z.Inertia > 1000 {
			l.Add(key+".inertia", "%d is out of range: 1 to 1000 frames", z.Inertia)
		}
		if z.Loiter < 0 {
			l.Add(key+".loiter", "%s is negative: use 0 or a duration such as 5s", z.Loiter)
		}
	}
	return l.Err()
}

// CheckClasses reports every zone class that is not one of the model's labels; it runs once
// the model (and so its labels) is known.
func (zs Zones) CheckClasses(labels []string) error {
	known := map[string]bool{}
	for _, l := range labels {
		known[l] = true
	}
	var l confcheck.List
	for i := range zs {
		for j, c := range zs[i].Classes {
			if c != "" && !known[c] {
				l.Add(fmt.Sprintf("zones[%d].classes[%d]", i, j), "%q is not a class of the model (its classes: %v): use one of them", c, labels)
			}
		}
	}
	return l.Err()
}

// MaxPolygonPoints caps a zone's corners: validation compares every edge with every other
// (self-intersection), and every frame tests each tracked object against every edge. A zone
// drawn by hand has a few dozen; 200,000 took `stardetr check` four minutes.
const MaxPolygonPoints = 1000

// validatePolygon adds the problems of the zone polygon at key to l.
func validatePolygon(l *confcheck.List, key string, poly [][]float64) {
	if len(poly) < 3 {
		l.Add(key, "has %d points: a zone needs at least 3 [x, y] corners", len(poly))
		return
	}
	if len(poly) > MaxPolygonPoints {
		l.Add(key, "has %d corners: at most %d; draw the zone with fewer corners", len(poly), MaxPolygonPoints)
		return
	}
	bad := false
	for i, p := range poly {
		if len(p) != 2 {
			l.Add(fmt.Sprintf("%s[%d]", key, i), "has %d numbers: write each corner as [x, y]", len(p))
			bad = true
			continue
		}
		for j, v := range p {
			if math.IsNaN(v) || v < 0 || v > 1 {
				l.Add(fmt.Sprintf("%s[%d][%d]", key, i, j), "%v is out of range: 0 to 1 (corners are fractions of the frame's width and height)", v)
				bad = true
			}
		}
	}
	if bad {
		return
	}
	pts := toPoints(poly)
	if i, j, ok := selfIntersection(pts); ok {
		l.Add(key, "edge %d-%d crosses edge %d-%d: list the corners in order around the zone", i, (i+1)%len(pts), j, (j+1)%len(pts))
	} else if math.Abs(area(pts)) < 1e-9 {
		l.Add(key, "encloses no area: its corners lie on one line")
	}
}
