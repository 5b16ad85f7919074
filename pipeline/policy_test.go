package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
)

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string // substring of the error; "" = valid
	}{
		{DefaultPolicy(), ""},
		{Policy{Mode: "every"}, ""},
		{Policy{Mode: "sometimes"}, `cameras[0].publish.policy: "sometimes" is not a policy`},
		{Policy{Mode: "every", Interval: -time.Second}, "cameras[0].publish.interval: -1s is negative"},
		{Policy{Mode: "interval"}, "cameras[0].publish.interval: policy \"interval\" needs an interval > 0"},
		{Policy{Mode: "every", MinScore: 1.5}, "cameras[0].publish.min_score: 1.5 is out of range: 0 to 1"},
		{Policy{Mode: "every", Classes: []int{0, -2}}, "cameras[0].publish.classes[1]: class id -2 is negative"},
	} {
		err := confcheck.In("cameras[0].publish", tc.p.Validate())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.p, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want it to contain %q", tc.p, err, tc.want)
		}
	}
}

func TestPolicyDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	every := Policy{Mode: PolicyEvery}
	dets := Policy{Mode: PolicyDetections}
	limited := Policy{Mode: PolicyDetections, Interval: time.Second}
	heartbeat := Policy{Mode: PolicyInterval, Interval: 2 * time.Second}
	for _, tc := range []struct {
		name string
		p    Policy
		now  time.Time
		last time.Time
		n    int
		want bool
	}{
		{"every, no detections", every, t0, t0, 0, true},
		{"detections, none", dets, t0, time.Time{}, 0, false},
		{"detections, some", dets, t0, t0, 2, true},
		{"limited, first message", limited, t0, time.Time{}, 1, true},
		{"limited, too soon", limited, t0.Add(999 * time.Millisecond), t0, 1, false},
		{"limited, due", limited, t0.Add(time.Second), t0, 1, true},
		{"limited, due but empty", limited, t0.Add(time.Second), t0, 0, false},
		{"heartbeat, too soon", heartbeat, t0.Add(time.Second), t0, 3, false},
		{"heartbeat, due without detections", heartbeat, t0.Add(2 * time.Second), t0, 0, true},
	} {
		if got := tc.p.due(tc.now, tc.last, tc.n); got != tc.want {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPolicyKeep(t *testing.T) {
	p := Policy{Mode: PolicyEvery, MinScore: 0.5, Classes: []int{2, 3}}
	for _, tc := range []struct {
		class int
		score float32
		want  bool
	}{
		{2, 0.9, true}, {3, 0.5, true}, {2, 0.49, false}, {1, 0.9, false},
	} {
		if got := p.keep(tc.class, tc.score); got != tc.want {
			t.Errorf("keep(%d, %v) = %v, want %v", tc.class, tc.score, got, tc.want)
		}
	}
	if !(&Policy{Mode: PolicyEvery}).keep(7, 0) {
		t.Error("a policy without filters must keep every detection")
	}
}
