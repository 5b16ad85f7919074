package confcheck_test

import (
	"errors"
	"testing"

	"github.com/stardetr/stardetr/internal/confcheck"
)

func TestKeysAreRelativeUntilPlaced(t *testing.T) {
	var zone confcheck.List
	zone.Add("polygon", "has %d points: give at least 3", 2)
	zone.Add("inertia", "%d is out of range", -1)
	var cam confcheck.List
	cam.Add("url", "is empty")
	cam.Include("zones[1]", zone.Err())
	cam.Include("track", nil)
	err := confcheck.In("cameras[0]", cam.Err())
	want := "cameras[0].url: is empty\ncameras[0].zones[1].polygon: has 2 points: give at least 3\ncameras[0].zones[1].inertia: -1 is out of range"
	if err == nil || err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
	if confcheck.In("model", nil) != nil || (&confcheck.List{}).Err() != nil {
		t.Error("no problems must be a nil error")
	}
	if got := confcheck.In("mqtt", errors.New("brokers: empty")).Error(); got != "mqtt.brokers: empty" {
		t.Errorf("a plain error: %q", got)
	}
}
