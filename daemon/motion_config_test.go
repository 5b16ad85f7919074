package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/pipeline"
)

func loadYAML(t *testing.T, body string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(p)
}

// A camera that names none of the new sections gets their defaults (mode always, so an
// upgraded box keeps its behaviour); the keys it names are decoded.
func TestMotionConfigDefaultsAndKeys(t *testing.T) {
	cfg, err := loadYAML(t, "cameras:\n  - {name: a, url: /dev/video0}\n")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cameras[0]
	if c.Detect != pipeline.DefaultDetect() || c.Motion.Threshold != 25 || c.Motion.MinArea != 0.0005 ||
		len(c.Motion.Masks) != 0 || len(c.Objects.Filters) != 0 || c.Track.Stationary.IOU != 0.9 || c.Track.Stationary.After != 30*time.Second {
		t.Fatalf("defaults: detect %+v motion %+v objects %+v stationary %+v", c.Detect, c.Motion, c.Objects, c.Track.Stationary)
	}
	cfg, err = loadYAML(t, `model: {path: m.onnx}
cameras:
  - name: a
    url: /dev/video0
    detect: {mode: motion, keyframe_interval: 5s}
    motion: {masks: [[[0, 0], [0.5, 0], [0.5, 0.5]]], threshold: 30}
    objects: {filters: {car: {min_area: 0.01}, person: {min_score: 0.6, max_area: 0.4}}}
    track: {stationary: {after: 1m}}
`)
	if err != nil {
		t.Fatal(err)
	}
	c = cfg.Cameras[0]
	if c.Detect.Mode != "motion" || c.Detect.KeyframeInterval != 5*time.Second || len(c.Motion.Masks) != 1 ||
		c.Motion.Threshold != 30 || c.Motion.MinArea != 0.0005 || c.Track.Stationary.After != time.Minute || c.Track.Stationary.IOU != 0.9 {
		t.Fatalf("decoded detect %+v motion %+v stationary %+v", c.Detect, c.Motion, c.Track.Stationary)
	}
	if f := c.Objects.Filters; f["car"] != (pipeline.ObjectFilter{MinArea: 0.01}) || f["person"] != (pipeline.ObjectFilter{MinScore: 0.6, MaxArea: 0.4}) {
		t.Fatalf("filters %+v", f)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := checkModelLabels(&cfg, []string{"person", "car"}); err != nil {
		t.Fatal(err)
	}
	testenv.WantError(t, checkModelLabels(&cfg, []string{"person"}), `cameras[0].objects.filters.car: "car" is not a class of the model`)
}

// Bad input: each is one error naming its full key (a misspelt key is refused at load).
func TestMotionConfigBadInput(t *testing.T) {
	for _, c := range []struct{ camera, want string }{
		{"motion: {masks: [[[0, 0], [1.5, 0], [1, 1]]]}", "cameras[0].motion.masks[0][1][0]: 1.5 is out of range: 0 to 1"},
		{"motion: {masks: [[[0, 0], [1, 0]]]}", "cameras[0].motion.masks[0]: has 2 points"},
		{"detect: {keyframe_interval: 0s}", "cameras[0].detect.keyframe_interval: 0s is out of range"},
		{"detect: {keyframe_interval: -1s}", "cameras[0].detect.keyframe_interval: -1s is out of range"},
		{"detect: {mode: often}", `cameras[0].detect.mode: "often" is not a mode`},
		{"objects: {filters: {car: {min_score: 2}}}", "cameras[0].objects.filters.car.min_score: 2 is out of range"},
		{"track: {stationary: {after: -1s}}", "cameras[0].track.stationary.after: -1s is negative"},
	} {
		cfg, err := loadYAML(t, "model: {path: m.onnx}\ncameras:\n  - name: a\n    url: /dev/video0\n    "+c.camera+"\n")
		if err != nil {
			t.Fatalf("%s: load: %v", c.camera, err)
		}
		err = cfg.Validate()
		testenv.WantError(t, err, c.want)
		if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
			t.Errorf("%s: %d problems, want one: %v", c.camera, n, err)
		}
	}
	_, err := loadYAML(t, "cameras:\n  - name: a\n    url: /dev/video0\n    detect: {mod: motion}\n")
	testenv.WantError(t, err, "mod", "unknown key")
}

// The example configuration uses motion mode, as the README recommends.
func TestExampleUsesMotionMode(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "configs", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Cameras[0]; c.Detect.Mode != pipeline.DetectMotion || c.Detect.KeyframeInterval != 10*time.Second {
		t.Fatalf("example camera detect %+v, want motion, 10s", c.Detect)
	}
}
