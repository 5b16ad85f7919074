package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

const tracking = `
model:
  path: model.onnx
cameras:
  - name: front
    url: clip.mp4
    track: {enabled: true, min_hits: 2}
    zones:
      - name: drive
        polygon: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
        classes: [person]
      - name: door
        polygon: [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]
        inertia: 5
        loiter: 2s
events: {update_interval: 3s}
homeassistant: {enabled: true}
`

func TestTrackingConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, tracking))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cameras[0].URL = "rtsp://10.0.0.5/stream" // Validate wants an existing file
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.Cameras[0]
	if !c.Track.Enabled || c.Track.MinHits != 2 || c.Track.MaxAge != 30 || c.Track.IOU != 0.3 || c.Track.High != 0.5 || c.Track.Low != 0.1 {
		t.Errorf("track: file keys or defaults lost: %+v", c.Track)
	}
	if len(c.Zones) != 2 || c.Zones[0].Inertia != 3 || c.Zones[1].Inertia != 5 || c.Zones[1].Loiter != 2*time.Second || c.Zones[0].Polygon[2][1] != 1 {
		t.Errorf("zones: file keys or defaults lost: %+v", c.Zones)
	}
	if cfg.Events.UpdateInterval != 3*time.Second || cfg.Events.SnapshotMaxMB != 100 || cfg.Events.MaxPerSecond != 20 ||
		cfg.Events.SnapshotMaxPerSecond != 5 || !cfg.HomeAssistant.Enabled || cfg.HomeAssistant.Prefix != "homeassistant" {
		t.Errorf("events/homeassistant: %+v %+v", cfg.Events, cfg.HomeAssistant)
	}
	testenv.WantError(t, checkZoneClasses(cfg.Cameras, []string{"car"}), `cameras[0].zones[0].classes[0]: "person" is not a class of the model`, "use one of them")
}

// Every bad tracking, zone, events and http value gets its own line naming the full key.
func TestTrackingConfigErrors(t *testing.T) {
	body := strings.NewReplacer(
		"min_hits: 2", "min_hits: 0, iou: 2, high: 0.2, low: 0.3",
		"[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0], [1, 1], [1, 0], [0, 1]]",
		"name: door", "name: do/or",
		"[0.2, 0.2]]", "[0.2, 1.2]]",
		"update_interval: 3s", "update_interval: -1s, max_per_second: 0, snapshot_max_per_second: .nan",
	).Replace(tracking)
	cfg, err := LoadConfig(writeConfig(t, body+"http: {listen: 0.0.0.0:9110, max_connections: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WantError(t, cfg.Validate(),
		"cameras[0].track.min_hits: 0 is out of range",
		"cameras[0].track.iou: 2 is out of range",
		"cameras[0].track.low: 0.3 is above high 0.2",
		"cameras[0].zones[0].polygon: edge 0-1 crosses edge 2-3",
		`cameras[0].zones[1].name: "do/or"`,
		"cameras[0].zones[1].polygon[2][1]: 1.2 is out of range: 0 to 1",
		"events.update_interval: -1s is negative",
		"events.max_per_second: 0 is out of range: 1 to 10000 events per second and camera",
		"events.snapshot_max_per_second: NaN is out of range: 0.1 to 1000",
		`http.listen: "0.0.0.0:9110" is reachable from other machines`,
		"http.max_connections: 1 is out of range: 2 to 2048",
	)
}

func TestZonesNeedTracking(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, strings.Replace(tracking, "enabled: true, min_hits: 2", "min_hits: 2", 1)))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WantError(t, cfg.Validate(), "cameras[0].zones: need tracking: set cameras[0].track.enabled: true")
}

func TestHTTPAuthConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := HTTPConfig{Listen: "0.0.0.0:9110", MaxViewers: 4, MaxConnections: 64, Auth: HTTPAuthConfig{Username: "admin", PasswordFile: pw}}
	testenv.WantError(t, c.Validate(), "auth.password_file: "+pw+" is readable by everyone", "chmod 600")
	if err := os.Chmod(pw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("good auth: %v", err)
	}
	c.Auth.Username = ""
	testenv.WantError(t, c.Validate(), "auth.username")
	for _, l := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		c := HTTPConfig{Listen: l, MaxViewers: 4, MaxConnections: 64}
		if err := c.Validate(); err != nil {
			t.Errorf("%s needs no auth: %v", l, err)
		}
	}
	for _, l := range []string{":9110", "192.168.1.2:9110", "[::]:9110"} {
		c := HTTPConfig{Listen: l, MaxViewers: 4, MaxConnections: 64}
		if err := c.Validate(); err == nil {
			t.Errorf("%s without auth accepted", l)
		}
	}
	for _, c := range []struct {
		max  int
		want string
	}{
		{0, "max_connections: 0 is out of range: 2 to 2048"},
		{100000, "max_connections: 100000 is out of range"},
		{4, "max_connections: 4 leaves no connection for the API next to max_viewers 4"},
	} {
		h := HTTPConfig{Listen: "127.0.0.1:1", MaxViewers: 4, MaxConnections: c.max}
		testenv.WantError(t, h.Validate(), c.want)
	}
}
