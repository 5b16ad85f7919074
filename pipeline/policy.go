package pipeline

import (
	"fmt"
	"slices"
	"time"
)

// Publish policy modes.
const (
	PolicyEvery      = "every"      // every processed frame is a candidate
	PolicyDetections = "detections" // only frames with at least one detection left after the filters
	PolicyInterval   = "interval"   // like every, but an interval > 0 is required: a heartbeat per interval
)

// Policy decides which processed frames of one camera become messages, and which detections
// they carry. It is the `cameras[].publish` section of the configuration. Interval is the
// minimum time between two messages of the camera under every mode (0 = no limit), so
// `policy: every, interval: 1s` and `policy: interval, interval: 1s` both mean at most one
// message a second.
type Policy struct {
	Mode     string        `mapstructure:"policy"`
	Interval time.Duration `mapstructure:"interval"`
	MinScore float64       `mapstructure:"min_score"`
	Classes  []int         `mapstructure:"classes"`
}

// DefaultPolicy publishes frames with detections, at most one a second, with no score or
// class filter.
func DefaultPolicy() Policy {
	return Policy{Mode: PolicyDetections, Interval: time.Second}
}

// Validate reports the first invalid value, naming its key under path (e.g. "cameras[0].publish").
func (p *Policy) Validate(path string) error {
	switch p.Mode {
	case PolicyEvery, PolicyDetections, PolicyInterval:
	default:
		return fmt.Errorf("%s.policy: %q is not a policy: use %q, %q or %q", path, p.Mode, PolicyEvery, PolicyDetections, PolicyInterval)
	}
	if p.Interval < 0 {
		return fmt.Errorf("%s.interval: %s is negative: use a duration ≥ 0 such as 1s", path, p.Interval)
	}
	if p.Mode == PolicyInterval && p.Interval == 0 {
		return fmt.Errorf("%s.interval: policy %q needs an interval > 0, such as 1s", path, PolicyInterval)
	}
	if p.MinScore < 0 || p.MinScore > 1 {
		return fmt.Errorf("%s.min_score: %g is outside 0..1", path, p.MinScore)
	}
	for i, c := range p.Classes {
		if c < 0 {
			return fmt.Errorf("%s.classes[%d]: class id %d is negative", path, i, c)
		}
	}
	return nil
}

// keep reports whether a detection of class id and score passes the filters.
func (p *Policy) keep(class int, score float32) bool {
	if float64(score) < p.MinScore {
		return false
	}
	return len(p.Classes) == 0 || slices.Contains(p.Classes, class)
}

// due reports whether a frame processed at now with n detections (after filtering) becomes a
// message, given the time of the camera's last message (zero if none yet).
func (p *Policy) due(now, last time.Time, n int) bool {
	if p.Mode == PolicyDetections && n == 0 {
		return false
	}
	return p.Interval == 0 || last.IsZero() || now.Sub(last) >= p.Interval
}
