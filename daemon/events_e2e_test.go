package daemon

import (
	"context"
	"encoding/json"
	"image"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/track"
)

// movingBoxClip writes a 10 s, 10 fps, 320×240 clip: black, and from t = 1 s a red 40×60 box
// at y = 150 moving right at 40 px/s from x = 0, gone past the right edge at t = 9 s.
func movingBoxClip(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "box.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=320x240:r=10:d=10",
		"-f", "lavfi", "-i", "color=c=red:s=40x60:r=10", "-filter_complex",
		"[0][1]overlay=x='if(lt(t,1),-100,(t-1)*40)':y=150:shortest=1:eval=frame",
		"-c:v", "libx264", "-pix_fmt", "yuv420p", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg (installed by scripts/setup; run make test): %v\n%s", err, out)
	}
	return p
}

// redBoxDetector stands in for the model: it reports the bounding box of the frame's red
// pixels as one "box" detection, so the detections follow what the clip really shows.
type redBoxDetector struct {
	mu    sync.Mutex
	found bool
	box   [4]float32
}

func (d *redBoxDetector) Preprocess(m gocv.Mat) error {
	b, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	w, h := m.Cols(), m.Rows()
	x1, y1, x2, y2 := w, h, -1, -1
	for y := range h {
		row := b[y*w*3 : (y+1)*w*3]
		for x := range w {
			if bl, g, r := row[3*x], row[3*x+1], row[3*x+2]; r > 150 && g < 80 && bl < 80 {
				x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.found = x2 >= x1+3 && y2 >= y1+3 // a sliver at the edge is not an object yet
	d.box = [4]float32{float32(x1), float32(y1), float32(x2 + 1), float32(y2 + 1)}
	return nil
}

func (d *redBoxDetector) Run() error { return nil }

func (d *redBoxDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.found {
		return out
	}
	return append(out, model.Detection{ClassID: 0, Label: "box", Score: 0.9, Box: d.box})
}

type wireEvent struct {
	Type         string     `json:"type"`
	ID           string     `json:"id"`
	Seq          uint64     `json:"seq"`
	TrackID      uint64     `json:"track_id"`
	Label        string     `json:"label"`
	Zones        []string   `json:"zones"`
	EnteredZones []string   `json:"entered_zones"`
	Box          [4]float64 `json:"box"`
	Snapshot     string     `json:"snapshot"`
	Frames       int        `json:"frames"`
}

// Events end to end: a real clip decoded by OpenCV, the pipeline, the tracker, the publisher
// and a real mosquitto. The box appears, crosses from the left zone into the right one, and
// leaves: new (in left) → update (in right) → end, counts up and back down, retained, track
// ids in the detections, a snapshot with the box drawn, and Home Assistant discovery.
// rig is the tracking half of a running stardetr: a real publisher and mosquitto, the
// pipeline with a real file source of the moving-box clip, the tracker, and the sink.
type rig struct {
	broker     *testenv.Mosquitto
	sub, haSub *testenv.Subscriber
	pub        *publish.Publisher
	sink       *messageSink
	pipe       *pipeline.Pipeline
	cfg        Config
	labels     []string
	state      string
}

func startRig(t *testing.T, loop bool) *rig {
	t.Helper()
	r := &rig{labels: []string{"box"}, state: t.TempDir()}
	clip := movingBoxClip(t)
	r.broker = testenv.StartMosquitto(t, "")
	r.sub = testenv.Subscribe(t, r.broker.URL("mqtt"), "stardetr/dev1/#", nil)
	r.haSub = testenv.Subscribe(t, r.broker.URL("mqtt"), "homeassistant/#", nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	mq := publish.DefaultConfig()
	mq.Brokers = []string{r.broker.URL("mqtt")}
	var err error
	if r.pub, err = publish.New(mq, publish.Options{DeviceID: "dev1", StateDir: r.state, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := r.pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = r.pub.Close(c)
	})

	cam := defaultCamera()
	cam.Name, cam.URL, cam.Loop, cam.Pace = "front", clip, loop, "realtime"
	cam.Publish = pipeline.Policy{Mode: pipeline.PolicyEvery}
	cam.Track.Enabled, cam.Track.MaxAge = true, 5
	cam.Zones = track.Zones{
		{Name: "left", Polygon: [][]float64{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}, Inertia: 3},
		{Name: "right", Polygon: [][]float64{{0.5, 0}, {1, 0}, {1, 1}, {0.5, 1}}, Inertia: 3},
	}
	r.cfg = DefaultConfig()
	r.cfg.StateDir, r.cfg.Cameras, r.cfg.HomeAssistant.Enabled = r.state, []CameraConfig{cam}, true
	r.cfg.Events.UpdateInterval = 0
	if err := checkZoneClasses(r.cfg.Cameras, r.labels); err != nil {
		t.Fatal(err)
	}
	if err := publishRetained(&r.cfg, "dev1", "seed", r.labels, r.pub); err != nil {
		t.Fatal(err)
	}

	r.sink = &messageSink{pub: r.pub, log: log, recent: &recentEvents{n: 10}}
	if r.sink.snaps, err = openEventSnapshots(filepath.Join(r.state, "events"), 1<<20, r.cfg.Events.SnapshotMaxPerSecond, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.sink.snaps.Close) // after the pipeline's cleanup below: nothing saves any more
	r.pipe = pipeline.New([]pipeline.Slot{pipeline.OneFrame(&redBoxDetector{})}, r.sink, pipeline.Options{}, log)
	cams, err := buildCameras(r.cfg.Cameras, r.cfg.Events, r.labels, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pipe.Update(cams); err != nil {
		t.Fatal(err)
	}
	pctx, stopPipe := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.pipe.Run(pctx) }()
	t.Cleanup(func() { stopPipe(); <-done })
	return r
}

func TestEventsEndToEnd(t *testing.T) {
	r := startRig(t, false)
	sub, haSub, sink, pub, cfg, labels, state := r.sub, r.haSub, r.sink, r.pub, r.cfg, r.labels, r.state
	broker := r.broker

	isEnd := func(m testenv.Received) bool {
		return m.Topic == "stardetr/dev1/front/events" && strings.Contains(string(m.Payload), `"type":"end"`)
	}
	msgs := sub.WaitFor(t, 40*time.Second, "the end event and the counts back at 0", func(ms []testenv.Received) bool {
		return slices.ContainsFunc(ms, isEnd) && lastPayload(ms, "stardetr/dev1/front/all/box") == "0" &&
			lastPayload(ms, "stardetr/dev1/front/right/box") == "0"
	})

	var events []wireEvent
	var seqs []uint64
	tracked := 0
	for _, m := range msgs {
		switch m.Topic {
		case "stardetr/dev1/front/events":
			var e wireEvent
			if err := json.Unmarshal(m.Payload, &e); err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
			seqs = append(seqs, e.Seq)
		case "stardetr/dev1/front/detections":
			var d struct {
				Seq        uint64
				Detections []struct {
					TrackID uint64 `json:"track_id"`
				}
			}
			if err := json.Unmarshal(m.Payload, &d); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, d.Seq)
			for _, x := range d.Detections {
				if x.TrackID != 0 {
					tracked++
					if x.TrackID != 1 {
						t.Errorf("detection with track_id %d: one box, one track, id 1", x.TrackID)
					}
				}
			}
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq %d follows %d: events and detections share one gapless sequence", seqs[i], seqs[i-1])
		}
	}
	if tracked < 40 {
		t.Errorf("%d detections carried a track id; the box is in view for ~80 frames", tracked)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
		if e.Label != "box" || e.TrackID != 1 || !strings.HasPrefix(e.ID, "front-") {
			t.Errorf("event %+v", e)
		}
	}
	t.Logf("events %+v; %d detections with a track id", events, tracked)
	want := []string{"new", "update", "end"}
	if !slices.Equal(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	if !slices.Equal(events[0].Zones, []string{"left"}) || !slices.Equal(events[1].Zones, []string{"right"}) ||
		!slices.Equal(events[2].EnteredZones, []string{"left", "right"}) {
		t.Errorf("zones: new %v, update %v, end entered %v; want [left], [right], [left right]",
			events[0].Zones, events[1].Zones, events[2].EnteredZones)
	}
	if events[2].Frames < 40 {
		t.Errorf("end: %d frames; the box is in view for ~80", events[2].Frames)
	}

	// Counts went 0 → 1 → 0 in each zone, and stay retained.
	for _, c := range []struct{ topic, want string }{
		{"stardetr/dev1/front/all/box", "0 1 0"},
		{"stardetr/dev1/front/left/box", "0 1 0"},
		{"stardetr/dev1/front/right/box", "0 1 0"},
	} {
		if got := strings.Join(payloads(msgs, c.topic), " "); got != c.want {
			t.Errorf("%s: %q, want %q (on change only)", c.topic, got, c.want)
		}
	}

	// The snapshot: the event's best frame with the box drawn in green around the red box.
	id := events[2].ID
	if events[2].Snapshot != "/events/"+id+"/snapshot.jpg" {
		t.Errorf("end event snapshot %q", events[2].Snapshot)
	}
	sink.snaps.waitWritten(id, nil)
	f, err := sink.snaps.open(id)
	if err != nil {
		t.Fatalf("snapshot of %s: %v", id, err)
	}
	jpg, _ := io.ReadAll(f)
	f.Close()
	img, err := gocv.IMDecode(jpg, gocv.IMReadColor)
	if err != nil || img.Empty() {
		t.Fatalf("snapshot is not a JPEG: %v", err)
	}
	defer img.Close()
	checkBoxDrawn(t, img)
	if r := sink.recent.latest("front", 5); len(r) != 1 || !strings.Contains(string(r[0]), `"type":"end"`) || !strings.Contains(string(r[0]), id) {
		t.Errorf("recent events: %s", r)
	}

	checkDiscovery(t, broker.URL("mqtt"), haSub, sub, &cfg, labels, pub, state)
}

func lastPayload(ms []testenv.Received, topic string) string {
	p := payloads(ms, topic)
	if len(p) == 0 {
		return ""
	}
	return p[len(p)-1]
}

func payloads(ms []testenv.Received, topic string) []string {
	var out []string
	for _, m := range ms {
		if m.Topic == topic {
			out = append(out, string(m.Payload))
		}
	}
	return out
}

// checkBoxDrawn finds the red box and asserts a green outline just around it.
func checkBoxDrawn(t *testing.T, img gocv.Mat) {
	t.Helper()
	b, _ := img.DataPtrUint8()
	w := img.Cols()
	px := func(x, y int) (int, int, int) {
		i := (y*w + x) * 3
		return int(b[i+2]), int(b[i+1]), int(b[i])
	}
	var red image.Rectangle
	first := true
	for y := range img.Rows() {
		for x := range w {
			if r, g, bl := px(x, y); r > 150 && g < 80 && bl < 80 {
				if first {
					red, first = image.Rect(x, y, x+1, y+1), false
				}
				red = red.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	if first {
		t.Fatal("snapshot shows no red box")
	}
	// The outline (2 px, green) runs along the box's top edge.
	y := red.Min.Y
	greens := 0
	for x := red.Min.X + 2; x < red.Max.X-2; x++ {
		for dy := -2; dy <= 1; dy++ {
			if r, g, bl := px(x, y+dy); g > 150 && r < 120 && bl < 120 {
				greens++
				break
			}
		}
	}
	if greens < (red.Dx()-4)/2 {
		t.Errorf("green outline along the box's top edge at %d of %d columns (red box %v)", greens, red.Dx()-4, red)
	}
}

// checkDiscovery checks the Home Assistant discovery payloads field by field against the
// facts of Home Assistant's MQTT discovery documentation, then removes a zone and expects its
// entries and count deleted by empty retained payloads.
func checkDiscovery(t *testing.T, brokerURL string, haSub, sub *testenv.Subscriber, cfg *Config, labels []string, pub *publish.Publisher, state string) {
	t.Helper()
	const occTopic = "homeassistant/binary_sensor/stardetr_dev1/front_left_box/config"
	const cntTopic = "homeassistant/sensor/stardetr_dev1/front_left_box/config"
	msgs := haSub.WaitFor(t, 10*time.Second, "6 discovery entries", func(ms []testenv.Received) bool { return len(ms) >= 6 })
	var occ, cnt map[string]any
	for _, m := range msgs {
		var v map[string]any
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			t.Fatalf("%s: %v", m.Topic, err)
		}
		switch m.Topic {
		case occTopic:
			occ = v
		case cntTopic:
			cnt = v
		}
	}
	if occ == nil || cnt == nil {
		var topics []string
		for _, m := range msgs {
			topics = append(topics, m.Topic)
		}
		t.Fatalf("discovery topics %v lack %s or %s", topics, occTopic, cntTopic)
	}
	device := map[string]any{"identifiers": []any{"stardetr_dev1"}, "name": "stardetr dev1", "manufacturer": "stardetr",
		"model": "seed", "sw_version": Version}
	for name, e := range map[string]map[string]any{"binary_sensor": occ, "sensor": cnt} {
		for k, want := range map[string]any{
			"state_topic":           "stardetr/dev1/front/left/box",
			"availability_topic":    "stardetr/dev1/status",
			"payload_available":     "online",
			"payload_not_available": "offline",
			"qos":                   1.0,
		} {
			if e[k] != want {
				t.Errorf("%s %s = %v, want %v", name, k, e[k], want)
			}
		}
		dev, _ := json.Marshal(e["device"])
		wantDev, _ := json.Marshal(device)
		if string(dev) != string(wantDev) {
			t.Errorf("%s device = %s, want %s", name, dev, wantDev)
		}
	}
	if occ["unique_id"] != "stardetr_dev1_front_left_box_occupancy" || occ["device_class"] != "occupancy" ||
		occ["payload_on"] != "ON" || occ["payload_off"] != "OFF" || occ["value_template"] != "{{ 'ON' if value | int(0) > 0 else 'OFF' }}" {
		t.Errorf("binary_sensor: %v", occ)
	}
	if cnt["unique_id"] != "stardetr_dev1_front_left_box_count" || cnt["state_class"] != "measurement" || cnt["device_class"] != nil {
		t.Errorf("sensor: %v", cnt)
	}
	for _, m := range msgs {
		if m.Retained {
			t.Errorf("%s arrived as retained to a subscriber present before it was published", m.Topic)
		}
	}
	late := testenv.Subscribe(t, brokerURL, "homeassistant/#", nil)
	if got := late.WaitFor(t, 10*time.Second, "retained discovery", func(ms []testenv.Received) bool { return len(ms) >= 6 }); !got[0].Retained {
		t.Errorf("discovery entries are not retained")
	}

	// A reload without the left zone deletes its entries and its count.
	c2 := *cfg
	c2.Cameras = slices.Clone(cfg.Cameras)
	c2.Cameras[0].Zones = c2.Cameras[0].Zones[1:]
	if err := publishRetained(&c2, "dev1", "seed", labels, pub); err != nil {
		t.Fatal(err)
	}
	haSub.WaitFor(t, 10*time.Second, "empty payloads on the left zone's entries", func(ms []testenv.Received) bool {
		return lastEmpty(ms, occTopic) && lastEmpty(ms, cntTopic)
	})
	sub.WaitFor(t, 10*time.Second, "an empty payload on the left zone's count", func(ms []testenv.Received) bool {
		return lastEmpty(ms, "stardetr/dev1/front/left/box")
	})
	if _, err := os.Stat(filepath.Join(state, retainedFile)); err != nil {
		t.Errorf("owned topics not remembered: %v", err)
	}
}

func lastEmpty(ms []testenv.Received, topic string) bool {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Topic == topic {
			return len(ms[i].Payload) == 0
		}
	}
	return false
}
