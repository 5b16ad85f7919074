package track_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/track"
)

// TestStationaryLifecycle: a car drives in, parks for a minute (its box jittering by a pixel,
// as a detector's does), drives off and leaves. Events: new; one update with stationary set
// 30 s after it stopped and no periodic updates while parked; an update without it when it
// moves again, periodic ones again while it drives; end. It counts as present throughout, and
// the scene needs every frame while the car drives.
func TestStationaryLifecycle(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.MaxAge, cfg.UpdateInterval = 3, 5, 10*time.Second
	sc := track.NewScene(cfg, nil, []string{"person", "car"})
	type step struct {
		sec        float64
		typ        string
		stationary bool
	}
	var got []step
	needs := map[string][]float64{} // "true"/"false" → times NeedsFrames said so, for spot checks
	const fps = 10
	// 0–5 s: x from 0 to 500; 5–65 s: parked at x = 500; 65–80 s: x from 500 on at 50 px/s;
	// from 80 s no detection.
	for f := 0; f <= 90*fps; f++ {
		sec := float64(f) / fps
		now := t0.Add(time.Duration(f) * time.Second / fps)
		var x float32
		switch {
		case sec < 5:
			x = float32(100 * sec)
		case sec < 65:
			x = 500 + float32(f%2) // the detector's jitter: IoU 0.99
		default:
			x = 500 + float32(50*(sec-65))
		}
		var dets []track.Detection
		if sec < 80 {
			dets = []track.Detection{{ClassID: 1, Label: "car", Score: 0.9, Box: box(x, 400, 200, 100)}}
		}
		res := sc.Update(now, 2000, 1000, dets)
		for _, ev := range res.Events {
			got = append(got, step{sec, ev.Type, ev.Stationary})
		}
		for _, c := range res.Counts {
			if c.Label == "car" && c.N == 0 && sec >= 0.2 && sec < 80 {
				t.Fatalf("%.1f s: the car's count fell to 0 while it was in view", sec)
			}
		}
		k := fmt.Sprint(sc.NeedsFrames())
		needs[k] = append(needs[k], sec)
	}
	want := []step{
		{0.2, "new", false},
		// Periodic updates every 10 s while it drives and before it counts as stopped.
		{10.2, "update", false},
		{20.2, "update", false},
		{30.2, "update", false},
		// Stopped at 5 s: stationary 30 s later, one update, then silence while parked.
		{35, "update", true},
		// Moving again: the box leaves IoU 0.9 of where it stopped (200 px wide: 10 px).
		{65.3, "update", false},
		{75.3, "update", false},
		// Last seen at 79.9 s; unmatched for 6 > max_age 5 frames.
		{80.5, "end", false},
	}
	if len(got) != len(want) {
		t.Fatalf("events %+v\nwant %+v", got, want)
	}
	for i := range want {
		if g, w := got[i], want[i]; g.typ != w.typ || g.stationary != w.stationary || fmt.Sprintf("%.1f", g.sec) != fmt.Sprintf("%.1f", w.sec) {
			t.Errorf("event %d: got %+v, want %+v", i, g, w)
		}
	}
	// Every frame needed while it drives (tentative, then moving); none while parked (35 s to
	// 65.3 s) nor once it is lost (from 80 s): frames skipped then count as misses (Age).
	wantNeeds := func(sec float64) bool { return sec < 35 || (sec >= 65.3 && sec < 80) }
	for k, secs := range needs {
		for _, sec := range secs {
			if w := fmt.Sprint(wantNeeds(sec)); k != w {
				t.Errorf("%.1f s: NeedsFrames %s, want %s", sec, k, w)
			}
		}
	}
	if !slices.Contains(needs["false"], 50.0) {
		t.Error("NeedsFrames never false while the car was parked")
	}
}

// A parked car seen only now and then (a motion-gated camera's keyframes) stays stationary
// and tracked: sparse frames change nothing.
func TestStationaryWithSparseFrames(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.UpdateInterval = 1, 10*time.Second
	cfg.Stationary.After = 5 * time.Second
	sc := track.NewScene(cfg, nil, []string{"car"})
	det := []track.Detection{{Label: "car", Score: 0.9, Box: box(500, 400, 200, 100)}}
	var events []string
	for f := range 60 { // every frame for 6 s
		for _, ev := range sc.Update(at(f), 2000, 1000, det).Events {
			events = append(events, fmt.Sprintf("%s %v", ev.Type, ev.Stationary))
		}
	}
	for k := 1; k <= 30; k++ { // then a keyframe every 10 s for 5 minutes
		res := sc.Update(at(59+100*k), 2000, 1000, det)
		if res.TrackIDs[0] != 1 {
			t.Fatalf("keyframe %d: track id %d, want 1", k, res.TrackIDs[0])
		}
		for _, ev := range res.Events {
			events = append(events, fmt.Sprintf("%s %v", ev.Type, ev.Stationary))
		}
		if sc.NeedsFrames() {
			t.Fatalf("keyframe %d: NeedsFrames with only a parked car", k)
		}
	}
	if want := []string{"new false", "update true"}; !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

func TestStationaryConfigValidate(t *testing.T) {
	for _, c := range []struct {
		mod  func(*track.Config)
		want []string
	}{
		{func(c *track.Config) { c.Stationary.IOU = 0 }, []string{"stationary.iou: 0 is out of range: 0.01 to 1"}},
		{func(c *track.Config) { c.Stationary.IOU = 1.5 }, []string{"stationary.iou: 1.5 is out of range"}},
		{func(c *track.Config) { c.Stationary.After = -time.Second }, []string{"stationary.after: -1s is negative", "use 0"}},
	} {
		cfg := track.DefaultConfig()
		c.mod(&cfg)
		testenv.WantError(t, cfg.Validate(), c.want...)
	}
	cfg := track.DefaultConfig()
	if cfg.Stationary.IOU != 0.9 || cfg.Stationary.After != 30*time.Second {
		t.Errorf("defaults %+v, want iou 0.9 after 30s", cfg.Stationary)
	}
}

// A lost object ends max_age frames after it was last seen, counting the frames a motion-gated
// camera skipped (Age) as misses; a stationary one is not aged, and a lost stationary one asks
// for every frame.
func TestAgeEndsLostObjects(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.MaxAge = 1, 30
	cfg.Stationary.After = time.Second
	sc := track.NewScene(cfg, nil, []string{"person", "car"})
	walker := func(f int) track.Detection {
		return track.Detection{ClassID: 0, Label: "person", Score: 0.9, Box: box(float32(20*f), 100, 50, 100)}
	}
	parked := track.Detection{ClassID: 1, Label: "car", Score: 0.9, Box: box(600, 600, 200, 100)}
	f := 0
	for ; f < 20; f++ { // both seen for 2 s: the car is stationary, the walker is not
		sc.Update(at(f), 2000, 1000, []track.Detection{walker(f), parked})
	}
	// The walker leaves: lost at frame 20; the car stays.
	res := sc.Update(at(f), 2000, 1000, []track.Detection{parked})
	if len(res.Events) != 0 || sc.NeedsFrames() {
		t.Fatalf("walker just lost: events %+v, NeedsFrames %v; want none, false", res.Events, sc.NeedsFrames())
	}
	// 100 frames skipped (10 s without motion), then a keyframe: the walker ends, the car stays.
	sc.Age(100)
	f += 101
	res = sc.Update(at(f), 2000, 1000, []track.Detection{parked})
	if len(res.Events) != 1 || res.Events[0].Type != detection.EventEnd || res.Events[0].Label != "person" || !res.Events[0].End.Equal(at(19)) {
		t.Fatalf("keyframe after 100 skipped frames: events %+v, want the walker's end (last seen %v)", res.Events, at(19))
	}
	// A keyframe that misses the parked car: it is lost but stationary, so it needs every frame
	// and is not aged; seen again the next frame, it carries on.
	sc.Update(at(f+1), 2000, 1000, nil)
	if !sc.NeedsFrames() {
		t.Fatal("a lost stationary car: NeedsFrames false, want true")
	}
	sc.Age(1000)
	res = sc.Update(at(f+2), 2000, 1000, []track.Detection{parked})
	if len(res.Events) != 0 || res.TrackIDs[0] != 2 || sc.NeedsFrames() {
		t.Fatalf("the car seen again: events %+v, ids %v, NeedsFrames %v; want no event, id 2, false", res.Events, res.TrackIDs, sc.NeedsFrames())
	}
}
