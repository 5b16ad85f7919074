package track

import (
	"strconv"
	"time"

	"github.com/stardetr/stardetr/detection"
)

// Count is the number of confirmed objects of one label in one zone (AllZone: anywhere).
type Count struct {
	Zone  string
	Label string
	N     int
}

// Result is what one frame changed. Its slices belong to the Scene and stay valid until the
// next Update or Close.
type Result struct {
	// TrackIDs has one entry per detection: its confirmed track's id, or 0.
	TrackIDs []uint64
	Events   []detection.Event
	// Best lists the confirmed objects whose best score rose in this frame (the moment to
	// keep a snapshot), as their current event view with an empty Type.
	Best []detection.Event
	// Counts lists the counts that changed (all of them, zeros included, on the first frame).
	Counts []Count
}

// eventState is an object's event bookkeeping, kept in the object.
type eventState struct {
	id        string
	start     time.Time
	last      time.Time // last frame matched
	lastEvent time.Time
	best      float32
	frames    int
	zones     []zoneState
	cur       []string
	entered   []string
	// anchor is the box where the object was when it last moved, anchorAt when that was.
	anchor     [4]float32
	anchorAt   time.Time
	stationary bool
}

// reuse starts a fresh state that keeps old's buffers.
func (e *eventState) reuse(old *eventState) {
	e.zones = old.zones[:0]
	e.cur = old.cur[:0]
	e.entered = old.entered[:0]
}

// Scene tracks the objects of one camera, places them in its zones and reports events and
// counts. It is not safe for concurrent use: one goroutine calls Update.
type Scene struct {
	cfg    Config
	zones  []zone
	tr     *tracker
	labels []string // by class id
	// counts[z][class], z = len(zones) for AllZone; prev is the last frame's.
	counts, prev [][]int
	first        bool
	res          Result
	outlines     []Outline
}

// NewScene returns a scene for a camera with validated cfg and zones; labels are the model's
// class names by class id (they name the counts).
func NewScene(cfg Config, zones Zones, labels []string) *Scene {
	s := &Scene{cfg: cfg, tr: newTracker(cfg), labels: append([]string(nil), labels...), first: true}
	for _, z := range zones {
		s.zones = append(s.zones, zone{name: z.Name, pts: toPoints(z.Polygon), classes: z.Classes, inertia: z.Inertia, loiter: z.Loiter})
		o := Outline{Name: z.Name}
		for _, p := range z.Polygon {
			o.Polygon = append(o.Polygon, [2]float64{p[0], p[1]})
		}
		s.outlines = append(s.outlines, o)
	}
	s.counts = make([][]int, len(s.zones)+1)
	s.prev = make([][]int, len(s.zones)+1)
	for z := range s.counts {
		s.counts[z] = make([]int, len(labels))
		s.prev[z] = make([]int, len(labels))
	}
	return s
}

// CountKeys lists every (zone, label) count a camera with these zones publishes: per zone
// its classes (every label when it names none), and every label under AllZone.
func CountKeys(zones Zones, labels []string) []Count {
	var out []Count
	for _, z := range zones {
		ls := z.Classes
		if len(ls) == 0 {
			ls = labels
		}
		for _, l := range ls {
			out = append(out, Count{Zone: z.Name, Label: l})
		}
	}
	for _, l := range labels {
		out = append(out, Count{Zone: AllZone, Label: l})
	}
	return out
}

// Update processes one frame of a width×height picture taken at now.
func (s *Scene) Update(now time.Time, width, height int, dets []Detection) Result {
	s.tr.update(dets)
	s.res.Events = s.res.Events[:0]
	s.res.Best = s.res.Best[:0]
	s.res.Counts = s.res.Counts[:0]
	s.res.TrackIDs = grow(s.res.TrackIDs, len(dets))
	for i, o := range s.tr.detObj[:len(dets)] {
		s.res.TrackIDs[i] = 0
		if o != nil {
			s.res.TrackIDs[i] = o.id
		}
	}
	for _, o := range s.tr.objs {
		if o.seen {
			s.observe(o, now, width, height)
		}
	}
	for _, o := range s.tr.removed {
		if o.id != 0 && o.ev.id != "" {
			s.res.Events = s.emit(s.res.Events, o, detection.EventEnd)
		}
	}
	s.count()
	return s.res
}

// observe updates a matched object's zones and event, emitting what changed.
func (s *Scene) observe(o *object, now time.Time, width, height int) {
	e := &o.ev
	if e.start.IsZero() {
		e.start = now
		for range s.zones {
			e.zones = append(e.zones, zoneState{})
		}
	}
	e.last = now
	e.frames++
	best := o.score > e.best
	if best {
		e.best = o.score
	}
	// An object stands where the bottom centre of its box is.
	p := point{float64(o.box[0]+o.box[2]) / 2 / float64(width), float64(o.box[3]) / float64(height)}
	changed := false
	for i := range s.zones {
		z := &s.zones[i]
		if !z.counts(o.label) {
			continue
		}
		if e.zones[i].step(z, inside(z.pts, p), now) {
			changed = true
			if e.zones[i].in && !contains(e.entered, z.name) {
				e.entered = append(e.entered, z.name)
			}
		}
	}
	if changed {
		e.cur = e.cur[:0]
		for i := range s.zones {
			if e.zones[i].in {
				e.cur = append(e.cur, s.zones[i].name)
			}
		}
	}
	settled := s.settle(e, o.box, now)
	if o.id == 0 {
		return
	}
	switch {
	case e.id == "":
		e.id = strconv.FormatInt(e.start.UnixMilli(), 10) + "-" + strconv.FormatUint(o.id, 10)
		e.lastEvent = now
		best = true // the first snapshot comes with the new event
		s.res.Events = s.emit(s.res.Events, o, detection.EventNew)
	case changed || settled || (!e.stationary && s.cfg.UpdateInterval > 0 && now.Sub(e.lastEvent) >= s.cfg.UpdateInterval):
		e.lastEvent = now
		s.res.Events = s.emit(s.res.Events, o, detection.EventUpdate)
	}
	if best {
		s.res.Best = s.emit(s.res.Best, o, "")
	}
}

// settle follows whether the object stays put: its box must keep an IoU of at least
// stationary.iou with the box where it stopped, for stationary.after. It reports whether the
// object just became stationary or just moved again.
func (s *Scene) settle(e *eventState, box [4]float32, now time.Time) bool {
	st := s.cfg.Stationary
	if st.After <= 0 {
		return false
	}
	if e.anchorAt.IsZero() || iou(box, e.anchor) < st.IOU {
		e.anchor, e.anchorAt = box, now
		was := e.stationary
		e.stationary = false
		return was
	}
	if !e.stationary && now.Sub(e.anchorAt) >= st.After {
		e.stationary = true
		return true
	}
	return false
}

// NeedsFrames reports whether an object needs the detector on every frame: a tentative one
// (confirming takes min_hits frames in a row), a confirmed one that is not stationary, or a
// stationary one the last frame missed (one miss of a parked car must not start its end).
// When it reports false, a frame without motion can change nothing the detector would see:
// a motion-gated camera may skip it, and tells Age how many it skipped.
func (s *Scene) NeedsFrames() bool {
	for _, o := range s.tr.objs {
		lostNow := o.phase == lost
		if o.id == 0 || (!lostNow && !o.ev.stationary) || (lostNow && o.ev.stationary) {
			return true
		}
	}
	return false
}

// Age counts frames the detector skipped because nothing moved as misses of the lost objects
// that are not stationary: an object that left the picture ends after max_age frames whether
// the detector saw them or not, so a motion-gated camera ends it on its next frame instead of
// running the detector max_age times on an empty scene. Call it before the Update of the next
// frame the detector ran on.
func (s *Scene) Age(skipped int) {
	for _, o := range s.tr.objs {
		if o.phase == lost && !o.ev.stationary {
			o.missed = min(o.missed+skipped, s.cfg.MaxAge)
		}
	}
}

// emit appends the object's event view of type typ to list.
func (s *Scene) emit(list []detection.Event, o *object, typ string) []detection.Event {
	e := &o.ev
	ev := detection.Event{
		Type: typ, ID: e.id, TrackID: o.id, ClassID: o.class, Label: o.label, Score: e.best,
		Box: o.box, Zones: e.cur, EnteredZones: e.entered, Start: e.start, Frames: e.frames,
		Stationary: e.stationary,
	}
	if typ == detection.EventEnd {
		ev.End = e.last
	}
	return append(list, ev)
}

// count recomputes the counts and lists those that changed.
func (s *Scene) count() {
	s.counts, s.prev = s.prev, s.counts
	for z := range s.counts {
		clear(s.counts[z])
	}
	all := len(s.zones)
	for _, o := range s.tr.objs {
		if o.id == 0 {
			continue
		}
		c := s.classIndex(o)
		s.counts[all][c]++
		for z := range s.zones {
			if o.ev.zones[z].in {
				s.counts[z][c]++
			}
		}
	}
	for z, row := range s.counts {
		name := AllZone
		if z < all {
			name = s.zones[z].name
		}
		for c, n := range row {
			if (n != s.prev[z][c] || s.first) && (z == all || s.zones[z].counts(s.labels[c])) {
				s.res.Counts = append(s.res.Counts, Count{Zone: name, Label: s.labels[c], N: n})
			}
		}
	}
	s.first = false
}

// classIndex returns the object's class id, first widening the tables for a class the
// labels did not list (the model reported more classes than its names).
func (s *Scene) classIndex(o *object) int {
	for o.class >= len(s.labels) {
		c := len(s.labels)
		s.labels = append(s.labels, "class"+strconv.Itoa(c))
		if c == o.class {
			s.labels[c] = o.label
		}
		for z := range s.counts {
			s.counts[z] = append(s.counts[z], 0)
			s.prev[z] = append(s.prev[z], 0)
		}
	}
	return o.class
}

// Outline is a zone's name and corners (fractions of the frame), for drawing.
type Outline struct {
	Name    string
	Polygon [][2]float64
}

// Outlines returns the scene's zones. They never change, so any goroutine may call it.
func (s *Scene) Outlines() []Outline { return s.outlines }

// Close ends every object (the camera stops): it returns an end event for each confirmed
// one and the counts that drop to 0. The scene is empty afterwards.
func (s *Scene) Close() Result {
	s.res.Events, s.res.Best, s.res.Counts, s.res.TrackIDs = s.res.Events[:0], s.res.Best[:0], s.res.Counts[:0], s.res.TrackIDs[:0]
	for _, o := range s.tr.objs {
		if o.id != 0 && o.ev.id != "" {
			s.res.Events = s.emit(s.res.Events, o, detection.EventEnd)
		}
	}
	s.tr.removed = append(s.tr.removed, s.tr.objs...)
	clear(s.tr.objs)
	s.tr.objs = s.tr.objs[:0]
	s.count()
	return s.res
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
