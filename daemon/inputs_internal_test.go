package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// Issue 23's findings 6 to 9, the rules in-process; inputs_test.go runs the binary.

// writeValSet writes a YOLO dataset under dir: images/val/a.jpg and sub/b.jpg (copies of
// model/testdata/frame.jpg) with one box each, and data.yaml saying `path: .`.
func writeValSet(t *testing.T, dir string) {
	t.Helper()
	frame, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "testdata", "frame.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"images/val/a.jpg":     frame,
		"images/val/sub/b.jpg": frame,
		"labels/val/a.txt":     []byte("0 0.5 0.5 0.3 0.6\n"),
		"labels/val/sub/b.txt": []byte("1 0.4 0.4 0.2 0.2\n"),
		"data.yaml":            []byte("path: .\ntrain: images/val\nval: images/val\nnames:\n  0: person\n  1: car\n"),
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Finding 8: `eval --data data.yaml` with `path: .`, run from the dataset's folder, found 0
// instances (exit 0, mAP 0) where the absolute path found them. Relative, absolute and linked
// paths now give the same results.
func TestEvalFindsLabelsFromAnyDataPath(t *testing.T) {
	tiny := testenv.Model(t, "tiny.onnx")
	root := t.TempDir()
	ds := filepath.Join(root, "ds")
	writeValSet(t, ds)
	if err := os.Symlink(ds, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	type result struct {
		Images, Instances int
		MAP50             float64 `json:"mAP50"`
	}
	eval := func(name, data string) result {
		t.Helper()
		code, out, errs := runCmd(t, cmdEval, "--model", tiny, "--data", data, "--json", "--threads", "1")
		var res result
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, errs)
		}
		return res
	}
	abs := eval("absolute", filepath.Join(ds, "data.yaml"))
	if abs.Images != 2 || abs.Instances != 2 {
		t.Fatalf("absolute path: %+v, want 2 images and 2 instances", abs)
	}
	for _, c := range []struct{ name, dir, data string }{
		{"through a symbolic link", root, filepath.Join(root, "link", "data.yaml")},
		{"relative, from the dataset's folder", ds, "data.yaml"},
		{"relative, from its parent", root, filepath.Join("ds", "data.yaml")},
		{"relative, through the link", root, filepath.Join("link", "data.yaml")},
	} {
		t.Chdir(c.dir)
		if got := eval(c.name, c.data); got != abs {
			t.Errorf("%s: %+v, the absolute path gives %+v", c.name, got, abs)
		}
	}
}

// withDeadline runs f and fails the test if it has not returned within 20 s, instead of
// hanging: on the code before the fix a named pipe blocked the open forever. The blocked open
// is then released by opening the pipe for writing.
func withDeadline(t *testing.T, fifo string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		for {
			w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				w.Close()
			}
			select {
			case <-done:
				t.Fatalf("blocked for 20 s on the named pipe %s", fifo)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// Finding 9: a named pipe called x.jpg among the val images, or as a label file, blocked eval
// forever; infer too. They are refused up front, after a stat: exit 1 naming the file.
func TestNamedPipesAreRefused(t *testing.T) {
	tiny := testenv.Model(t, "tiny.onnx")
	ds := t.TempDir()
	writeValSet(t, ds)
	fifo := filepath.Join(ds, "images", "val", "x.jpg")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var code int
	var errs string
	withDeadline(t, fifo, func() { code, _, errs = runCmd(t, cmdEval, "--model", tiny, "--data", filepath.Join(ds, "data.yaml")) })
	if code != 1 || !strings.Contains(errs, fifo+" is a named pipe (FIFO), not an image file: remove it") {
		t.Errorf("eval, image FIFO: exit %d, %q", code, errs)
	}
	withDeadline(t, fifo, func() { code, _, errs = runCmd(t, cmdInfer, "--model", tiny, "--image", fifo) })
	if code != 1 || !strings.Contains(errs, "image "+fifo+": is a named pipe (FIFO), not a regular file") {
		t.Errorf("infer, FIFO: exit %d, %q", code, errs)
	}
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	label := filepath.Join(ds, "labels", "val", "a.txt")
	if err := os.Remove(label); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(label, 0o644); err != nil {
		t.Fatal(err)
	}
	withDeadline(t, label, func() { code, _, errs = runCmd(t, cmdEval, "--model", tiny, "--data", filepath.Join(ds, "data.yaml")) })
	if code != 1 || !strings.Contains(errs, label+": is a named pipe (FIFO), not a label file") {
		t.Errorf("eval, label FIFO: exit %d, %q", code, errs)
	}
}

// Finding 6, the cap as a flag and on a camera whose file is a still picture.
func TestPixelCap(t *testing.T) {
	tiny := testenv.Model(t, "tiny.onnx")
	frame := filepath.Join(testenv.RepoRoot(t), "model", "testdata", "frame.jpg")
	code, _, errs := runCmd(t, cmdInfer, "--model", tiny, "--image", frame, "--max-pixels", "1000")
	if code != 1 || !strings.Contains(errs, "image "+frame+": JPEG of 320×240 pixels is above the cap of 1000 pixels: scale it down, or raise --max-pixels") {
		t.Errorf("--max-pixels 1000: exit %d, %q", code, errs)
	}
	if code, _, errs := runCmd(t, cmdInfer, "--model", tiny, "--image", frame, "--max-pixels", "0"); code != 2 || !strings.Contains(errs, "not a positive number") {
		t.Errorf("--max-pixels 0: exit %d, %q", code, errs)
	}

	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.png"), filepath.Join(dir, "small.png")
	testenv.PNGBomb(t, big, 10000, 7000) // 70 MP: just above 64 MP
	testenv.PNGBomb(t, small, 8192, 8192)
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	body := "model:\n  path: m.onnx\ncameras:\n"
	for i, u := range []string{big, small, clip} {
		body += fmt.Sprintf("  - name: c%d\n    url: %s\n", i, u)
	}
	cfg, err := LoadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	testenv.WantError(t, err, "cameras[0].url: image "+big+": PNG of 10000×7000 pixels is above the cap of 67108864 pixels (64 MP)")
	if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("want one problem (8192×8192 is the cap, a video is FFmpeg's), got:\n%v", err)
	}
}

// Finding 7: the one topic rule on every name of the file, once per name.
func TestTopicNamesInTheFile(t *testing.T) {
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	long := strings.Repeat("z", 300)
	body := fmt.Sprintf(`device_id: "a\0b"
model:
  path: m.onnx
  names: {0: "a/b", 1: "fine"}
cameras:
  - name: %[2]s
    url: %[1]s
    track: {enabled: true}
    zones:
      - name: %[2]s
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
  - name: "a/b"
    url: %[1]s
homeassistant: {prefix: "a//b"}
mqtt: {topic_prefix: "$SYS/x"}
`, clip, long)
	cfg, err := LoadConfig(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	testenv.WantError(t, err,
		`device_id: "a\x00b" contains a NUL character`,
		`cameras[0].name: "zzzz`, `(300 bytes) is 300 bytes long: at most 256`,
		`cameras[0].zones[0].name: "zzzz`,
		`cameras[1].name: "a/b": use letters, digits`,
		`model.names[0]: "a/b" contains '/'`,
		`homeassistant.prefix: "a//b" has an empty topic level`,
		`mqtt.topic_prefix: level "$SYS" starts with '$'`)
	if n := strings.Count(err.Error(), "cameras[1].name"); n != 1 {
		t.Errorf("cameras[1].name has %d problems, want one:\n%v", n, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 7 {
		t.Errorf("%d problems, want 7:\n%v", n, err)
	}
	// Without tracking labels are no topic level: model.names may hold '/'.
	cfg.Cameras[0].Track.Enabled, cfg.Cameras[0].Zones = false, nil
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "model.names") {
		t.Errorf("without tracking: %v", err)
	}
}

// Finding 7: the model's labels, once it is loaded: topic levels on tracking cameras, and
// Home Assistant unique_ids that would collide.
func TestTopicNamesOfTheModel(t *testing.T) {
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`model:
  path: m.onnx
cameras:
  - name: front
    url: %s
    track: {enabled: true}
    zones:
      - {name: x_y, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}
      - {name: x, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}
homeassistant: {enabled: true}
`, clip)))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		names  map[int]string
		want   []string
	}{
		{"fine", []string{"person", "traffic light"}, nil, nil},
		{"two classes of one name: one count", []string{"car", "car"}, nil, nil},
		{"from the metadata", []string{"person", "a/b"}, nil,
			[]string{`model: the model's own label of class 1 "a/b" contains '/'`, `e.g. model.names: {1: "a_b"}`}},
		{"from model.names: Validate's", []string{"person", "a/b"}, map[int]string{1: "a/b"}, nil},
		{"dots and spaces meet", []string{"a.b", "a b"}, nil,
			[]string{`homeassistant: cameras[0] (front) zone "x_y" label "a.b" and cameras[0] (front) zone "x_y" label "a b" map to the same Home Assistant unique_id (stardetr_<device>_front_x_y_a_b_count)`}},
		{"zone and label meet", []string{"z", "y_z"}, nil,
			[]string{`homeassistant: cameras[0] (front) zone "x_y" label "z" and cameras[0] (front) zone "x" label "y_z" map to the same`}},
	} {
		cfg.Model.Names = c.names
		err := checkModelLabels(&cfg, c.labels)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		testenv.WantError(t, err, c.want...)
		if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
			t.Errorf("%s: %d problems, want one (one per pair of names, not per zone):\n%v", c.name, n, err)
		}
	}
	cfg.HomeAssistant.Enabled = false
	if err := checkModelLabels(&cfg, []string{"a.b", "a b"}); err != nil {
		t.Errorf("without Home Assistant: %v", err)
	}
	cfg.Cameras[0].Track.Enabled, cfg.Cameras[0].Zones = false, nil
	if err := checkModelLabels(&cfg, []string{"a/b", "#"}); err != nil {
		t.Errorf("without tracking: %v", err)
	}
}

// Finding 9: check and eval stop when their context ends (SIGINT/SIGTERM), saying so.
func TestCheckAndEvalStopWithTheirContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	run := func(cmd func(context.Context, []string, io.Writer, io.Writer) int, args ...string) (int, string) {
		var out, errb strings.Builder
		code := cmd(ctx, args, &out, &errb)
		if out.Len() != 0 {
			t.Errorf("%q printed %q after an interruption", args, out.String())
		}
		return code, errb.String()
	}
	ds := t.TempDir()
	writeValSet(t, ds)
	code, errs := run(cmdEval, "--model", testenv.Model(t, "tiny.onnx"), "--data", filepath.Join(ds, "data.yaml"))
	if code != 1 || errs != "stardetr eval: interrupted (context canceled) while reading the dataset: no results\n" {
		t.Errorf("eval: exit %d, %q", code, errs)
	}
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	path := writeConfig(t, fmt.Sprintf("state_dir: %s\nmodel:\n  path: %s\ncameras:\n  - {name: a, url: %s}\nhttp: {listen: \"\"}\n",
		t.TempDir(), testenv.Model(t, "tiny.onnx"), clip))
	code, errs = run(cmdCheck, "--config", path)
	if code != 1 || !strings.HasPrefix(errs, "stardetr check: interrupted (context canceled) while reading "+path) {
		t.Errorf("check: exit %d, %q", code, errs)
	}
}
