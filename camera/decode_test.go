package camera_test

import (
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/stardetr/stardetr/camera"
)

// The daemon embeds camera.Config squashed next to its own per-camera keys and decodes YAML
// with viper (mapstructure, string durations, unknown keys an error).
func TestConfigDecodesSquashed(t *testing.T) {
	type cameraSection struct {
		camera.Config `mapstructure:",squash"`
		Publish       map[string]any `mapstructure:"publish"`
	}
	in := map[string]any{
		"name": "front", "url": "/dev/video0", "width": 1280, "height": 720, "fps": 30, "fourcc": "MJPG",
		"loop": false, "pace": "fast", "stall_timeout": "2s", "open_timeout": "3s",
		"publish": map[string]any{"policy": "detections"},
	}
	out := cameraSection{Config: camera.DefaultConfig()}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: &out, ErrorUnused: true, DecodeHook: mapstructure.StringToTimeDurationHookFunc(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(in); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := camera.Config{Name: "front", URL: "/dev/video0", Width: 1280, Height: 720, FPS: 30, FourCC: "MJPG",
		Pace: "fast", StallTimeout: 2 * time.Second, OpenTimeout: 3 * time.Second}
	if out.Config != want {
		t.Errorf("decoded %+v, want %+v", out.Config, want)
	}
	if out.Publish["policy"] != "detections" {
		t.Errorf("publish section lost: %v", out.Publish)
	}
	if err := out.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
