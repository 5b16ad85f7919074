package publish_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// Events share the camera's seq with detections, match their schema, and arrive in order;
// counts are retained (a subscriber that comes later still gets them) and an empty retained
// payload deletes one.
func TestEventsCountsRetained(t *testing.T) {
	t.Parallel()
	b := testenv.StartMosquitto(t, "")
	evSchema := loadSchema(t, "events.v1.json")
	detSchema, _ := schemas(t)
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	sub := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/front/#", nil)
	p := newPublisher(t, cfg, t.TempDir(), true)
	waitConnected(t, p)

	start := time.Date(2026, 12, 2, 4, 0, 0, 123e6, time.UTC)
	det := frame("front", 1, 1)
	det.Detections[0].TrackID = 7
	if err := p.PublishDetections(det); err != nil {
		t.Fatal(err)
	}
	ev := detection.Event{Type: "new", ID: "front-1796183200123-7", TrackID: 7, ClassID: 0, Label: "person",
		Score: 0.87654, Box: [4]float32{1, 2, 3.333, 4}, Start: start, Frames: 3}
	if _, err := p.PublishEvent("front", ev, ""); err != nil {
		t.Fatal(err)
	}
	ev.Type, ev.Zones, ev.EnteredZones = "update", []string{"drive"}, []string{"drive"}
	if _, err := p.PublishEvent("front", ev, ""); err != nil {
		t.Fatal(err)
	}
	ev.Type, ev.Zones, ev.End, ev.Frames = "end", nil, start.Add(5*time.Second), 50
	snapshot := "/events/front-1796183200123-7/snapshot.jpg"
	if _, err := p.PublishEvent("front", ev, snapshot); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		zone, label string
		n           int
	}{{"drive", "person", 1}, {"all", "person", 1}, {"drive", "person", 0}} {
		if err := p.PublishCount("front", c.zone, c.label, c.n); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.PublishCount("front", "a/b", "person", 1); err == nil {
		t.Error("a zone name with '/' was accepted")
	}
	msgs := sub.WaitFor(t, 10*time.Second, "3 events", func(m []testenv.Received) bool {
		n := 0
		for _, r := range m {
			if r.Topic == "stardetr/dev1/front/events" {
				n++
			}
		}
		return n == 3 && hasTopic(m, "front/drive/person", "0")
	})
	var seqs []uint64
	var types []string
	for _, m := range msgs {
		switch m.Topic {
		case "stardetr/dev1/front/detections":
			validate(t, detSchema, m.Payload)
			var d struct {
				Seq        uint64
				Detections []map[string]any
			}
			if err := json.Unmarshal(m.Payload, &d); err != nil {
				t.Fatal(err)
			}
			if d.Detections[0]["track_id"] != 7.0 {
				t.Errorf("track_id %v, want 7", d.Detections[0]["track_id"])
			}
			seqs = append(seqs, d.Seq)
		case "stardetr/dev1/front/events":
			validate(t, evSchema, m.Payload)
			var e map[string]any
			if err := json.Unmarshal(m.Payload, &e); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, uint64(e["seq"].(float64)))
			types = append(types, e["type"].(string))
			if e["score"] != 0.8765 || e["start"] != "2026-12-02T04:00:00.123Z" || e["device"] != "dev1" || e["track_id"] != 7.0 {
				t.Errorf("event fields: %s", m.Payload)
			}
			if _, hasEnd := e["end"]; hasEnd != (e["type"] == "end") {
				t.Errorf("end present on a %v event: %s", e["type"], m.Payload)
			}
			if e["type"] == "end" && (e["end"] != "2026-12-02T04:00:05.123Z" || e["snapshot"] != snapshot) {
				t.Errorf("end event: %s", m.Payload)
			}
		}
	}
	if len(seqs) != 4 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 || seqs[3] != 4 {
		t.Errorf("seqs %v: detections and events must share one sequence 1, 2, 3, 4", seqs)
	}
	if len(types) != 3 || types[0] != "new" || types[1] != "update" || types[2] != "end" {
		t.Errorf("event order %v, want new update end", types)
	}
	for _, m := range msgs {
		if m.Topic == "stardetr/dev1/front/events" && m.Retained || m.Topic == "stardetr/dev1/front/all/person" && m.Retained {
			t.Errorf("%s arrived flagged retained to a live subscriber", m.Topic)
		}
	}
	// A subscriber that arrives now gets the latest counts, retained. (The broker sends the
	// retained messages again on every SUBSCRIBE, and the test's subscriber may subscribe twice
	// while it connects: each topic may come more than once, always with its latest value.)
	late := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/front/+/person", nil)
	got := late.WaitFor(t, 10*time.Second, "retained counts", func(m []testenv.Received) bool {
		return hasTopic(m, "front/drive/person", "0") && hasTopic(m, "front/all/person", "1")
	})
	for _, m := range got {
		want := map[string]string{"stardetr/dev1/front/drive/person": "0", "stardetr/dev1/front/all/person": "1"}[m.Topic]
		if !m.Retained || string(m.Payload) != want {
			t.Errorf("%s: %q retained %v, want %q retained", m.Topic, m.Payload, m.Retained, want)
		}
	}
	// An empty retained payload deletes the retained message.
	if err := p.PublishRetained("stardetr/dev1/front/all/person", nil); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(t, 10*time.Second, "the delete", func(m []testenv.Received) bool {
		return len(m) > 0 && m[len(m)-1].Topic == "stardetr/dev1/front/all/person" && len(m[len(m)-1].Payload) == 0
	})
	later := testenv.Subscribe(t, b.URL("mqtt"), "stardetr/dev1/front/+/person", nil)
	got = later.WaitFor(t, 10*time.Second, "one retained count", func(m []testenv.Received) bool { return len(m) >= 1 })
	// Mosquitto sends the retained messages of a new subscription at once, together: the
	// deleted one must not be among them.
	for _, m := range got {
		if m.Topic == "stardetr/dev1/front/all/person" {
			t.Errorf("deleted retained count still delivered: %q", m.Payload)
		}
	}
}
