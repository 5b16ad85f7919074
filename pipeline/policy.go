package pipeline

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
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

// Validate reports every invalid value, each naming its key within the policy (confcheck).
func (p *Policy) Validate() error {
	var l confcheck.List
	switch p.Mode {
	case PolicyEvery, PolicyDetections, PolicyInterval:
	default:
		l.Add("policy", "%q is not a policy: use %q, %q or %q", p.Mode, PolicyEvery, PolicyDetections, PolicyInterval)
	}
	switch {
	case p.Interval < 0:
		l.Add("interval", "%s is negative: use a duration ≥ 0 such as 1s", p.Interval)
	case p.Mode == PolicyInterval && p.Interval == 0:
		l.Add("interval", "policy %q needs an interval > 0, such as 1s", PolicyInterval)
	}
	if math.IsNaN(p.MinScore) || p.MinScore < 0 || p.MinScore > 1 {
		l.Add("min_score", "%g is out of range: 0 to 1", p.MinScore)
	}
	for i, c := range p.Classes {
		if c < 0 {
			l.Add(fmt.Sprintf("classes[%d]", i), "class id %d is negative", c)
		}
	}
	return l.Err()
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
