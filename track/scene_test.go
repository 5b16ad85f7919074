package track_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/track"
)

var t0 = time.Unix(1_800_000_000, 0)

func at(f int) time.Time { return t0.Add(time.Duration(f) * 100 * time.Millisecond) }

func box(x, y, w, h float32) [4]float32 { return [4]float32{x, y, x + w, y + h} }

// TestSceneLifecycle walks one person across a 1000×1000 frame from left to right through a
// zone covering the right half: the events must be new (after min_hits frames), update on
// entering the zone (after inertia frames), and end max_age frames after the person leaves;
// counts go up and back down.
func TestSceneLifecycle(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.MaxAge, cfg.UpdateInterval = 3, 5, 0
	zones := track.Zones{{Name: "right", Polygon: [][]float64{{0.5, 0}, {1, 0}, {1, 1}, {0.5, 1}}, Inertia: 2}}
	if err := zones.Validate(); err != nil {
		t.Fatal(err)
	}
	sc := track.NewScene(cfg, zones, []string{"person", "car"})
	type step struct {
		f      int
		typ    string
		zones  []string
		counts []track.Count
	}
	var got []step
	var ids []uint64
	// Frames 0..39: x = 100 + 20 f (bottom centre crosses 0.5 at x+50 = 500, f = 17.5);
	// then nothing.
	for f := 0; f < 50; f++ {
		var dets []track.Detection
		if f < 40 {
			dets = []track.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: box(float32(100+20*f), 300, 100, 200)}}
		}
		res := sc.Update(at(f), 1000, 1000, dets)
		if len(dets) > 0 {
			ids = append(ids, res.TrackIDs[0])
		}
		for _, ev := range res.Events {
			got = append(got, step{f: f, typ: ev.Type, zones: slices.Clone(ev.Zones)})
			if ev.Label != "person" || ev.ClassID != 0 || ev.TrackID != 1 || ev.Score != 0.9 {
				t.Errorf("frame %d: event %+v", f, ev)
			}
			if ev.ID != "1800000000000-1" || !ev.Start.Equal(at(0)) {
				t.Errorf("frame %d: id %q start %v, want 1800000000000-1 and %v", f, ev.ID, ev.Start, at(0))
			}
			if ev.Type == detection.EventEnd {
				if !ev.End.Equal(at(39)) || ev.Frames != 40 || !slices.Equal(ev.EnteredZones, []string{"right"}) {
					t.Errorf("end: end %v frames %d entered %v, want %v, 40, [right]", ev.End, ev.Frames, ev.EnteredZones, at(39))
				}
			}
		}
		if len(res.Counts) > 0 {
			got = append(got, step{f: f, counts: slices.Clone(res.Counts)})
		}
	}
	// Track ids: 0 while tentative (frames 0, 1), then 1 for good.
	for f, id := range ids {
		want := uint64(1)
		if f < 2 {
			want = 0
		}
		if id != want {
			t.Fatalf("frame %d: track id %d, want %d", f, id, want)
		}
	}
	c := func(zone, label string, n int) track.Count { return track.Count{Zone: zone, Label: label, N: n} }
	want := []step{
		{f: 0, counts: []track.Count{c("right", "person", 0), c("right", "car", 0), c("all", "person", 0), c("all", "car", 0)}},
		{f: 2, typ: "new"},
		{f: 2, counts: []track.Count{c("all", "person", 1)}},
		// Inside from f = 18 (bottom centre x = 100+360+50 = 510); inertia 2: counted at f = 19.
		{f: 19, typ: "update", zones: []string{"right"}},
		{f: 19, counts: []track.Count{c("right", "person", 1)}},
		// Last seen at f = 39; unmatched for 6 > max_age 5 frames: ends at f = 45.
		{f: 45, typ: "end", zones: []string{"right"}},
		{f: 45, counts: []track.Count{c("right", "person", 0), c("all", "person", 0)}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d steps %+v, want %+v", len(got), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.f != w.f || g.typ != w.typ || !slices.Equal(g.zones, w.zones) || !slices.Equal(g.counts, w.counts) {
			t.Errorf("step %d: got %+v, want %+v", i, g, w)
		}
	}
}

// TestSceneLoiterAndClasses: a zone that counts only cars ignores a person; with loiter 1s a
// car counts only after a second inside.
func TestSceneLoiterAndClasses(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.UpdateInterval = 1, 0
	zones := track.Zones{{Name: "lot", Polygon: [][]float64{{0, 0}, {1, 0}, {1, 1}, {0, 1}}, Classes: []string{"car"}, Inertia: 1, Loiter: time.Second}}
	sc := track.NewScene(cfg, zones, []string{"person", "car"})
	entered := map[string]int{}
	for f := 0; f < 20; f++ {
		dets := []track.Detection{
			{ClassID: 0, Label: "person", Score: 0.9, Box: box(100, 100, 50, 100)},
			{ClassID: 1, Label: "car", Score: 0.9, Box: box(500, 500, 200, 100)},
		}
		res := sc.Update(at(f), 1000, 1000, dets)
		for _, ev := range res.Events {
			if ev.Type == detection.EventUpdate && len(ev.Zones) > 0 {
				if _, ok := entered[ev.Label]; !ok {
					entered[ev.Label] = f
				}
			}
		}
	}
	// At 10 fps the car has been inside for 1 s at frame 10.
	if f, ok := entered["car"]; !ok || f != 10 {
		t.Errorf("car entered the zone at frame %d (%v), want 10", f, ok)
	}
	if _, ok := entered["person"]; ok {
		t.Errorf("a person entered a zone that counts cars only")
	}
}

// TestSceneClose ends confirmed tracks and zeroes the counts when the camera stops.
func TestSceneClose(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits = 1
	sc := track.NewScene(cfg, nil, []string{"person"})
	sc.Update(at(0), 100, 100, []track.Detection{{Label: "person", Score: 0.9, Box: box(10, 10, 20, 20)}})
	res := sc.Close()
	if len(res.Events) != 1 || res.Events[0].Type != detection.EventEnd || !res.Events[0].End.Equal(at(0)) {
		t.Fatalf("Close returned %+v, want one end event at %v", res.Events, at(0))
	}
	if len(res.Counts) != 1 || res.Counts[0] != (track.Count{Zone: "all", Label: "person", N: 0}) {
		t.Fatalf("Close counts %+v, want all/person back to 0", res.Counts)
	}
	if res := sc.Close(); len(res.Events)+len(res.Counts) != 0 {
		t.Fatalf("a second Close reported %+v", res)
	}
}

// TestLowScoreKeepsTrack: ByteTrack's second association. A detection below high but above
// low keeps a confirmed track alive; it never starts one.
func TestLowScoreKeepsTrack(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits, cfg.MaxAge = 1, 1
	sc := track.NewScene(cfg, nil, []string{"person"})
	var ended bool
	for f := 0; f < 10; f++ {
		score := float32(0.9)
		if f >= 2 {
			score = 0.3 // occluded: low but above low = 0.1
		}
		res := sc.Update(at(f), 1000, 1000, []track.Detection{{Label: "person", Score: score, Box: box(float32(100+5*f), 100, 50, 100)}})
		if res.TrackIDs[0] != 1 {
			t.Fatalf("frame %d: track id %d, want 1", f, res.TrackIDs[0])
		}
		for _, ev := range res.Events {
			ended = ended || ev.Type == detection.EventEnd
		}
	}
	if ended {
		t.Fatal("the track ended although low-score detections matched it")
	}
	res := sc.Update(at(10), 1000, 1000, []track.Detection{{Label: "person", Score: 0.3, Box: box(800, 800, 50, 100)}})
	if res.TrackIDs[0] != 0 {
		t.Fatalf("a low-score detection far from every track got id %d, want 0 (no new track)", res.TrackIDs[0])
	}
}

// TestTracksAreSeparatePerClass: a car and a person on the same spot are two tracks.
func TestTracksAreSeparatePerClass(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.MinHits = 1
	sc := track.NewScene(cfg, nil, []string{"person", "car"})
	for f := 0; f < 5; f++ {
		res := sc.Update(at(f), 1000, 1000, []track.Detection{
			{ClassID: 1, Label: "car", Score: 0.9, Box: box(100, 100, 50, 100)},
			{ClassID: 0, Label: "person", Score: 0.9, Box: box(100, 100, 50, 100)},
		})
		if res.TrackIDs[0] != 1 || res.TrackIDs[1] != 2 {
			t.Fatalf("frame %d: ids %v, want [1 2]", f, res.TrackIDs)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := track.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := track.Config{MinHits: 0, MaxAge: -1, IOU: 1.5, High: 0.2, Low: 0.4}
	testenv.WantError(t, bad.Validate(), "min_hits: 0 is out of range", "max_age: -1 is out of range", "iou: 1.5 is out of range", "low: 0.4 is above high 0.2")
}

func TestZonesValidate(t *testing.T) {
	sq := [][]float64{{0, 0}, {1, 0}, {1, 1}, {0, 1}}
	for _, c := range []struct {
		z    track.Zone
		want string
	}{
		{track.Zone{Name: "a", Polygon: sq[:2], Inertia: 1}, "zones[0].polygon: has 2 points"},
		{track.Zone{Name: "a", Polygon: [][]float64{{0, 0}, {1, 1}, {1, 0}, {0, 1}}, Inertia: 1}, "zones[0].polygon: edge 0-1 crosses edge 2-3"},
		{track.Zone{Name: "a", Polygon: [][]float64{{0, 0}, {1.5, 0}, {1, 1}}, Inertia: 1}, "zones[0].polygon[1][0]: 1.5 is out of range: 0 to 1"},
		{track.Zone{Name: "a", Polygon: [][]float64{{0, 0}, {0.5, 0.5}, {1, 1}}, Inertia: 1}, "encloses no area"},
		{track.Zone{Name: "a/b", Polygon: sq, Inertia: 1}, `zones[0].name: "a/b"`},
		{track.Zone{Name: "a+", Polygon: sq, Inertia: 1}, `zones[0].name: "a+"`},
		{track.Zone{Name: "#", Polygon: sq, Inertia: 1}, `zones[0].name: "#"`},
		{track.Zone{Name: "all", Polygon: sq, Inertia: 1}, "reserved"},
		{track.Zone{Name: "a", Polygon: sq, Inertia: 0}, "zones[0].inertia"},
		{track.Zone{Name: "a", Polygon: sq, Inertia: 1, Loiter: -1}, "zones[0].loiter"},
	} {
		testenv.WantError(t, track.Zones{c.z}.Validate(), c.want)
	}
	dup := track.Zones{{Name: "a", Polygon: sq, Inertia: 1}, {Name: "a", Polygon: sq, Inertia: 1}}
	testenv.WantError(t, dup.Validate(), `zones[1].name: "a" is already the name of zones[0]`)
	// Every problem at once.
	two := track.Zones{{Name: "a/", Polygon: sq[:1], Inertia: 0}}
	if err := two.Validate(); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems on three lines, got %v", err)
	}
	cls := track.Zones{{Name: "a", Polygon: sq, Inertia: 1, Classes: []string{"person", "unicorn"}}}
	testenv.WantError(t, cls.CheckClasses([]string{"person", "car"}), `zones[0].classes[1]: "unicorn" is not a class`)
}
