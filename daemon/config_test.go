package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
model:
  path: model.onnx
cameras:
  - name: front
    url: clip.mp4
  - name: back
    url: rtsp://10.0.0.5/stream
    loop: false
    publish: {policy: every, interval: 0s, min_score: 0.5}
`

func TestLoadConfigDefaultsAndPaths(t *testing.T) {
	p := writeConfig(t, minimal)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if cfg.Model.Path != filepath.Join(dir, "model.onnx") {
		t.Errorf("model.path = %s, want it resolved against the config's folder", cfg.Model.Path)
	}
	if cfg.Model.Conf != 0.25 || cfg.Model.MaxDet != 100 || cfg.MQTT.QoS != 1 || cfg.HTTP.Listen != "127.0.0.1:9110" {
		t.Errorf("defaults not applied: conf %v max_det %d qos %d listen %q", cfg.Model.Conf, cfg.Model.MaxDet, cfg.MQTT.QoS, cfg.HTTP.Listen)
	}
	front, back := cfg.Cameras[0], cfg.Cameras[1]
	if front.URL != filepath.Join(dir, "clip.mp4") || back.URL != "rtsp://10.0.0.5/stream" {
		t.Errorf("camera urls: %q, %q", front.URL, back.URL)
	}
	if !front.Loop || front.StallTimeout != 5*time.Second || front.Publish.Mode != "detections" || front.Publish.Interval != time.Second {
		t.Errorf("camera defaults not applied to an entry that does not set them: %+v", front)
	}
	if back.Loop || back.Publish.Mode != "every" || back.Publish.Interval != 0 || back.Publish.MinScore != 0.5 {
		t.Errorf("camera keys from the file lost: %+v", back)
	}
}

func TestLoadConfigEnvironmentOverrides(t *testing.T) {
	t.Setenv("STARDETR_MODEL_THREADS", "3")
	t.Setenv("STARDETR_MQTT_QOS", "0")
	t.Setenv("STARDETR_DEVICE_ID", "box7")
	t.Setenv("STARDETR_MQTT_BROKERS", "mqtt://a:1883,mqtts://b:8883")
	cfg, err := LoadConfig(writeConfig(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Threads != 3 || cfg.MQTT.QoS != 0 || cfg.DeviceID != "box7" {
		t.Errorf("environment not applied: threads %d qos %d device %q", cfg.Model.Threads, cfg.MQTT.QoS, cfg.DeviceID)
	}
	if got := strings.Join(cfg.MQTT.Brokers, " "); got != "mqtt://a:1883 mqtts://b:8883" {
		t.Errorf("brokers from the environment: %q", got)
	}
}

// Every kind of key the README says the environment can set: string, int, float, bool,
// duration, list of strings, list of ints.
func TestLoadConfigEnvironmentOverridesEveryKind(t *testing.T) {
	for k, v := range map[string]string{
		"STARDETR_LOG_LEVEL":             "debug",
		"STARDETR_MODEL_CONF":            "0.4",
		"STARDETR_MODEL_TENSORRT_FP16":   "false",
		"STARDETR_MQTT_STATS_INTERVAL":   "3s",
		"STARDETR_MODEL_PROVIDERS":       "cuda,cpu",
		"STARDETR_MODEL_IMGSZ":           "320,256",
		"STARDETR_MODEL_CLASSES":         "0,2",
		"STARDETR_WATCHDOG_RETRY_BUDGET": "90s",
	} {
		t.Setenv(k, v)
	}
	cfg, err := LoadConfig(writeConfig(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintln(cfg.LogLevel, cfg.Model.Conf, cfg.Model.TensorRT.FP16, cfg.MQTT.StatsInterval, cfg.Model.Providers,
		cfg.Model.Imgsz, cfg.Model.Classes, cfg.Watchdog.RetryBudget)
	if want := "debug 0.4 false 3s [cuda cpu] [320 256] [0 2] 1m30s\n"; got != want {
		t.Errorf("from the environment: %s; want %s", got, want)
	}
}

func TestLoadConfigRejectsUnknownKeys(t *testing.T) {
	for _, tc := range []struct{ body, key string }{
		{"modle:\n  path: x\n", "modle"},
		{"model:\n  path: x\n  treads: 2\n", "treads"},
		{"cameras:\n  - name: a\n    url: x.mp4\n    lop: true\n", "lop"},
		{"mqtt:\n  tls:\n    verify: false\n", "verify"},
	} {
		_, err := LoadConfig(writeConfig(t, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "unknown key") {
			t.Errorf("config with key %q: error %v, want it named as unknown", tc.key, err)
		}
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	clip, err := filepath.Abs(filepath.Join("..", "camera", "testdata", "testsrc-320x240-10fps.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(writeConfig(t, `
device_id: "a/b"
log_level: loud
model:
  path: m.onnx
  conf: 1.5
  memory: {cpu_arena: true, mem_pattern: false}
cameras:
  - name: front
    url: `+clip+`
    fps: -5
  - name: front
    url: "ftp://x/y"
    publish: {policy: sometimes}
mqtt:
  brokers: ["foo://x"]
  topic_prefix: "a/#"
http:
  listen: "nonsense"
`))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"device_id:", "log_level:", "model.conf:", "cameras[0].fps", `cameras[1].name: "front" is already the name of cameras[0]`,
		"cameras[1].url", "cameras[1].publish.policy", "mqtt.brokers[0]", "mqtt.topic_prefix", "http.listen:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not name %q:\n%v", want, err)
		}
	}
}

func TestValidateNeedsCameras(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "model:\n  path: m.onnx\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cameras: none configured") {
		t.Fatalf("no cameras: %v", err)
	}
}

// The shipped example and demo configs load; the example is valid apart from the files it names.
func TestShippedConfigsLoad(t *testing.T) {
	for _, name := range []string{"example.yaml", "demo.yaml"} {
		if _, err := LoadConfig(filepath.Join("..", "configs", name)); err != nil {
			t.Errorf("configs/%s: %v", name, err)
		}
	}
}

// The reload warning names each changed key as it is written in the file; cameras, which a
// reload applies, are not listed.
func TestChangedKeys(t *testing.T) {
	a := DefaultConfig()
	a.Cameras = []CameraConfig{defaultCamera()}
	b := a
	b.Cameras = nil
	b.Model.Threads = a.Model.Threads + 1
	b.MQTT.Queue.MaxMB = a.MQTT.Queue.MaxMB * 2
	b.MQTT.Brokers = []string{"mqtt://elsewhere:1883"}
	got := changedKeys(reflect.ValueOf(a), reflect.ValueOf(b), "")
	want := []string{"model.threads", "mqtt.brokers", "mqtt.queue.max_mb"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changed keys %q, want %q", got, want)
	}
	if got := changedKeys(reflect.ValueOf(a), reflect.ValueOf(a), ""); len(got) != 0 {
		t.Fatalf("no change listed as %q", got)
	}
}
