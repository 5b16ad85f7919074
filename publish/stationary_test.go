package publish_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// The optional stationary field: sent (true) on the events of an object that stays put,
// absent otherwise; both match schema v1.
func TestStationaryEventField(t *testing.T) {
	b := testenv.StartMosquitto(t, "")
	schema := loadSchema(t, "events.v1.json")
	cfg := publish.DefaultConfig()
	cfg.Brokers = []string{b.URL("mqtt")}
	p := newPublisher(t, cfg, t.TempDir(), false)
	ev := detection.Event{Type: "update", ID: "front-1796183200123-7", TrackID: 7, Label: "car",
		Score: 0.9, Box: [4]float32{1, 2, 3, 4}, Start: time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC), Frames: 300, Stationary: true}
	msg, err := p.PublishEvent("front", ev, "")
	if err != nil {
		t.Fatal(err)
	}
	validate(t, schema, msg)
	if !strings.Contains(string(msg), `"stationary":true`) {
		t.Errorf("stationary event without the field: %s", msg)
	}
	ev.Stationary = false
	if msg, err = p.PublishEvent("front", ev, ""); err != nil {
		t.Fatal(err)
	}
	validate(t, schema, msg)
	if strings.Contains(string(msg), "stationary") {
		t.Errorf("moving object's event names stationary: %s", msg)
	}
}
