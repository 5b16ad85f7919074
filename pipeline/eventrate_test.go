package pipeline_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/track"
)

func ev(typ string, id uint64, zones ...string) detection.Event {
	return detection.Event{Type: typ, ID: "e" + string(rune('0'+id)), TrackID: id, Zones: zones, EnteredZones: zones}
}

func types(evs []detection.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+"#"+string(rune('0'+e.TrackID)))
	}
	return out
}

// The rules of events.max_per_second on constructed events: a new event costs two tokens and
// its end is then always sent; an object not announced loses all its events and its snapshots;
// an update without a token waits, a later update or the end replaces it.
func TestEventLimitRules(t *testing.T) {
	l := pipeline.NewEventLimit(4) // a bucket of 4, 4 a second
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	check := func(step string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: sent %v, want %v", step, got, want)
		}
	}

	out, best := l.Filter(at(0), []detection.Event{ev("new", 1), ev("new", 2), ev("new", 3)},
		[]detection.Event{ev("", 1), ev("", 2), ev("", 3)})
	check("three new with 4 tokens", types(out), []string{"new#1", "new#2"})
	check("best frames", types(best), []string{"#1", "#2"})

	out, _ = l.Filter(at(0), []detection.Event{ev("update", 3), ev("update", 1, "left")}, nil)
	check("updates without tokens", types(out), nil)
	zones := []string{"right"}
	out, _ = l.Filter(at(100), []detection.Event{ev("update", 1, zones...)}, nil) // 0.4 tokens
	check("a second update of a waiting object", types(out), nil)
	// The scene reuses its slices on its next Update: the waiting update keeps its own copy.
	zones[0] = "overwritten by the scene"
	out, _ = l.Filter(at(350), nil, nil) // 1.4 tokens
	check("a token back", types(out), []string{"update#1"})
	if z := out[0].Zones; !slices.Equal(z, []string{"right"}) {
		t.Errorf("the waiting update sent carries zones %v, want the latest [right]", z)
	}

	out, _ = l.Filter(at(350), []detection.Event{ev("update", 2)}, nil) // 0.4 tokens: waits
	check("update of 2 waits", types(out), nil)
	out, _ = l.Filter(at(360), []detection.Event{ev("end", 3), ev("end", 2), ev("end", 1)}, nil)
	check("ends", types(out), []string{"end#2", "end#1"})

	for _, c := range []struct {
		typ  string
		want uint64
	}{{"new", 2}, {"update", 1}, {"end", 2}} {
		if got := l.Sent(c.typ); got != c.want {
			t.Errorf("sent %s: %d, want %d", c.typ, got, c.want)
		}
	}
	// Rate: object 3's new, update and end. Coalesced: object 1's first update (replaced by
	// its second) and object 2's update (replaced by its end).
	if r, c := l.Dropped(pipeline.EventDropRate), l.Dropped(pipeline.EventDropCoalesced); r != 3 || c != 2 {
		t.Errorf("dropped: rate %d, coalesced %d; want 3 and 2", r, c)
	}
}

// The storm of issue 23 through the real tracker: boxes that jump every frame, tracks
// confirmed at once (min_hits 1), ended after one missed frame (max_age 1) and matched only
// at IoU 0.9 turn each frame into new and end events. The limit holds the camera to its rate,
// every object announced is ended, and every event is either sent or counted.
func TestEventLimitStorm(t *testing.T) {
	cfg := track.DefaultConfig()
	cfg.Enabled, cfg.MinHits, cfg.MaxAge, cfg.IOU = true, 1, 1, 0.9
	scene := track.NewScene(cfg, nil, []string{"person", "car"})
	const rate, fps, seconds = 20, 65, 10
	l := pipeline.NewEventLimit(rate)
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1_800_000_000, 0)
	var in, sent uint64
	announced := map[uint64]bool{}
	perSecond := make([]int, seconds+1)
	take := func(now time.Time, res track.Result) {
		in += uint64(len(res.Events))
		out, best := l.Filter(now, res.Events, res.Best)
		sent += uint64(len(out))
		perSecond[int(now.Sub(t0)/time.Second)] += len(out)
		for _, e := range out {
			switch e.Type {
			case detection.EventNew:
				announced[e.TrackID] = true
			case detection.EventUpdate:
				if !announced[e.TrackID] {
					t.Fatalf("update of track %d, which was not announced", e.TrackID)
				}
			case detection.EventEnd:
				if !announced[e.TrackID] {
					t.Fatalf("end of track %d, which was not announced", e.TrackID)
				}
				delete(announced, e.TrackID)
			}
		}
		for _, b := range best {
			if !announced[b.TrackID] {
				t.Fatalf("a snapshot of track %d, which was not announced", b.TrackID)
			}
		}
	}
	var dets []detection.Detection
	for f := range fps * seconds {
		now := t0.Add(time.Duration(f) * time.Second / fps)
		dets = dets[:0]
		for range 3 + rng.IntN(5) {
			x, y := rng.Float32()*280, rng.Float32()*200
			dets = append(dets, detection.Detection{ClassID: rng.IntN(2), Score: 0.3 + 0.7*rng.Float32(), Box: [4]float32{x, y, x + 40, y + 40}})
		}
		take(now, scene.Update(now, 320, 240, dets))
	}
	take(t0.Add(seconds*time.Second), scene.Close())

	dropped := l.Dropped(pipeline.EventDropRate) + l.Dropped(pipeline.EventDropCoalesced)
	t.Logf("%d events from the tracker in %d s, %d sent (per second %v), %d dropped for the rate, %d coalesced",
		in, seconds, sent, perSecond, l.Dropped(pipeline.EventDropRate), l.Dropped(pipeline.EventDropCoalesced))
	if in < 10*rate*seconds {
		t.Fatalf("the tracker made only %d events in %d s: not the storm of the issue", in, seconds)
	}
	if sent+dropped != in {
		t.Errorf("%d events in, %d sent + %d counted as dropped: %d unaccounted", in, sent, dropped, int64(in)-int64(sent+dropped))
	}
	if len(announced) != 0 {
		t.Errorf("%d objects announced and never ended", len(announced))
	}
	// Two tokens per new (its end's included), one per update: at most a bucket plus the rate.
	if limit := uint64(rate*seconds + rate); sent > limit {
		t.Errorf("%d events sent in %d s at max_per_second %d: more than %d", sent, seconds, rate, limit)
	}
	if sent < rate*seconds/2 {
		t.Errorf("only %d events sent in %d s of storm at max_per_second %d", sent, seconds, rate)
	}
}
