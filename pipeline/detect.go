package pipeline

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/model"
)

// Detect modes.
const (
	DetectAlways = "always" // the model runs on every frame it can take
	DetectMotion = "motion" // only on frames with motion, while an object is tracked, and on keyframes
)

// Detect is the `cameras[].detect` section: which frames the model runs on.
type Detect struct {
	Mode string `mapstructure:"mode"`
	// KeyframeInterval is the longest a motion-gated camera goes without a model run: an
	// object that appears without motion (a slow dusk, a parked car seen after a restart) is
	// still found, and a stationary one keeps its track.
	KeyframeInterval time.Duration `mapstructure:"keyframe_interval"`
}

// DefaultDetect runs the model on every frame (the behaviour before motion gating existed),
// with 10 s keyframes once motion mode is chosen.
func DefaultDetect() Detect { return Detect{Mode: DetectAlways, KeyframeInterval: 10 * time.Second} }

// Validate reports every invalid value, each naming its key within the section.
func (d *Detect) Validate() error {
	var l confcheck.List
	switch d.Mode {
	case DetectAlways, DetectMotion:
	default:
		l.Add("mode", "%q is not a mode: use %q (every frame) or %q (frames with motion, tracked objects and keyframes)", d.Mode, DetectAlways, DetectMotion)
	}
	if d.KeyframeInterval <= 0 || d.KeyframeInterval > time.Hour {
		l.Add("keyframe_interval", "%s is out of range: use a duration above 0 and at most 1h, such as 10s", d.KeyframeInterval)
	}
	return l.Err()
}

// Objects is the `cameras[].objects` section: per-label filters that drop detections before
// tracking and publishing.
type Objects struct {
	// Filters maps a label of the model to the bounds its detections must meet.
	Filters map[string]ObjectFilter `mapstructure:"filters"`
}

// ObjectFilter bounds one label's detections. Areas are fractions of the frame's area (a box
// of 128×72 pixels in a 1280×720 frame is 0.01), so a filter survives a resolution change;
// 0 leaves a bound out.
type ObjectFilter struct {
	MinArea  float64 `mapstructure:"min_area"`
	MaxArea  float64 `mapstructure:"max_area"` // 0: no upper bound
	MinScore float64 `mapstructure:"min_score"`
}

// Validate reports every invalid value, keys relative to the section ("filters.car.min_area").
func (o *Objects) Validate() error {
	var l confcheck.List
	for _, label := range sortedLabels(o.Filters) {
		f := o.Filters[label]
		key := "filters." + label
		if label == "" {
			l.Add("filters", "has an empty label: name a class of the model, e.g. person")
		}
		unit := func(name string, v float64) bool {
			if math.IsNaN(v) || v < 0 || v > 1 {
				l.Add(key+"."+name, "%v is out of range: 0 to 1", v)
				return false
			}
			return true
		}
		okMin, okMax := unit("min_area", f.MinArea), unit("max_area", f.MaxArea)
		unit("min_score", f.MinScore)
		if okMin && okMax && f.MaxArea > 0 && f.MinArea > f.MaxArea {
			l.Add(key+".min_area", "%v is above max_area %v: min_area must be ≤ max_area", f.MinArea, f.MaxArea)
		}
	}
	return l.Err()
}

// CheckLabels reports every filter whose label is not a class of the model; it runs once the
// model (and so its labels) is known.
func (o *Objects) CheckLabels(labels []string) error {
	var l confcheck.List
	for _, label := range sortedLabels(o.Filters) {
		if label != "" && !slices.Contains(labels, label) {
			l.Add("filters."+label, "%q is not a class of the model (its classes: %v): filter one of them", label, labels)
		}
	}
	return l.Err()
}

func sortedLabels(m map[string]ObjectFilter) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// filter drops, in place, the detections of a w×h frame that their label's filter rejects.
func (o *Objects) filter(dets []model.Detection, w, h int) []model.Detection {
	if len(o.Filters) == 0 {
		return dets
	}
	frame := float64(w) * float64(h)
	kept := dets[:0]
	for _, d := range dets {
		f, ok := o.Filters[d.Label]
		if ok {
			area := float64(d.Box[2]-d.Box[0]) * float64(d.Box[3]-d.Box[1]) / frame
			if float64(d.Score) < f.MinScore || area < f.MinArea || (f.MaxArea > 0 && area > f.MaxArea) {
				continue
			}
		}
		kept = append(kept, d)
	}
	return kept
}
