package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

func runCmd(t *testing.T, cmd func(context.Context, []string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmd(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInferCommand(t *testing.T) {
	root := testenv.RepoRoot(t)
	image := filepath.Join(root, "model", "testdata", "frame.jpg")
	lib := testenv.ONNXRuntime(t)
	plugin := testenv.Plugin(t)
	tiny := testenv.Model(t, "tiny.onnx")

	code, out, errs := runCmd(t, cmdInfer, "--model", tiny, "--image", image, "--json", "--conf", "0.3",
		"--onnxruntime", lib, "--plugin", plugin, "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var dets []model.Detection
	if err := json.Unmarshal([]byte(out), &dets); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	for _, d := range dets {
		if d.Score <= 0.3 || (d.Label != "person" && d.Label != "car") {
			t.Errorf("detection %+v", d)
		}
	}
	if !strings.Contains(out, `"class_id"`) && len(dets) > 0 {
		t.Errorf("JSON keys: %s", out)
	}

	code, out, errs = runCmd(t, cmdInfer, "--model", tiny, "--image", image, "--onnxruntime", lib, "--plugin", plugin)
	if code != 0 || !strings.Contains(out, "detection(s) with score > 0.25") {
		t.Errorf("text output: exit %d, %q, %q", code, out, errs)
	}

	// A JPEG whose header is whole but that ends before its image data: the header check
	// passes, OpenCV's decoder refuses it.
	jpeg, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	noScan := filepath.Join(t.TempDir(), "noscan.jpg")
	if err := os.WriteFile(noScan, jpeg[:bytes.Index(jpeg, []byte{0xFF, 0xDA})], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--model", tiny}, 2, "--model and --image are required"},
		{[]string{"--model", tiny, "--image", filepath.Join(root, "nope.jpg")}, 1, "nope.jpg"},
		{[]string{"--model", tiny, "--image", filepath.Join(root, "go.mod")}, 1, "go.mod: unknown image format"},
		{[]string{"--model", tiny, "--image", noScan}, 1, "noscan.jpg: OpenCV cannot decode it"},
		{[]string{"--model", filepath.Join(root, "nope.onnx"), "--image", image}, 1, "does not exist"},
		{[]string{"--model", tiny, "--image", image, "--plugin", filepath.Join(root, "nope.so")}, 1, "nope.so (configured)"},
		{[]string{"--model", tiny, "--image", image, "extra"}, 2, `unexpected argument "extra"`},
	} {
		code, _, errs := runCmd(t, cmdInfer, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("infer %q: exit %d, stderr %q; want exit %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	lib, plugin := testenv.ONNXRuntime(t), testenv.Plugin(t)
	code, out, errs := runCmd(t, cmdVersion, "--onnxruntime", lib, "--plugin", plugin)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	for _, w := range []string{"stardetr     " + Version, "onnxruntime  1.", "opencv       4.", "carafe       "} {
		if !strings.Contains(out, w) {
			t.Errorf("output %q lacks %q", out, w)
		}
	}
	code, out, _ = runCmd(t, cmdVersion, "--onnxruntime", lib, "--plugin", "/nonexistent/lib.so")
	if code != 1 || !strings.Contains(out, "carafe       not found (/nonexistent/lib.so (configured))") || !strings.Contains(out, "opencv") {
		t.Errorf("missing plugin: exit %d, %q", code, out)
	}
}

func TestBenchCommand(t *testing.T) {
	tiny := testenv.Model(t, "tiny.onnx")
	code, out, errs := runCmd(t, cmdBench, "--model", tiny, "--runs", "2", "--threads", "1",
		"--onnxruntime", testenv.ONNXRuntime(t), "--plugin", testenv.Plugin(t))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"provider     cpu", "load", "preprocess", "bare Run()", "detect / bare Run():",
		"GFLOPs per frame", "fp32 peak", "CARAFE ", "top ops"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// --config takes the file's model section as the base; other flags override it wherever they stand.
func TestInferUsesConfigModelSection(t *testing.T) {
	root := testenv.RepoRoot(t)
	image := filepath.Join(root, "model", "testdata", "frame.jpg")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := "model:\n  path: " + testenv.Model(t, "tiny.onnx") + "\n  conf: 0.0\n  max_det: 2\n  threads: 1\n  names: {0: walker, 1: wagon}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var dets []model.Detection
	code, out, errs := runCmd(t, cmdInfer, "--image", image, "--json", "--config", cfg)
	if code != 0 || json.Unmarshal([]byte(out), &dets) != nil || len(dets) != 2 {
		t.Fatalf("from the config: exit %d, %q, %q; want 2 detections (max_det 2)", code, out, errs)
	}
	for _, d := range dets {
		if d.Label != "walker" && d.Label != "wagon" {
			t.Errorf("label %q: the config's names were not applied", d.Label)
		}
	}
	code, out, errs = runCmd(t, cmdInfer, "--max-det", "1", "--image", image, "--json", "--config", cfg)
	if code != 0 || json.Unmarshal([]byte(out), &dets) != nil || len(dets) != 1 {
		t.Fatalf("--max-det before --config: exit %d, %q, %q; want 1 detection", code, out, errs)
	}
	if code, _, errs := runCmd(t, cmdInfer, "--image", image, "--config", filepath.Join(root, "nope.yaml")); code != 2 || !strings.Contains(errs, "nope.yaml") {
		t.Fatalf("missing config: exit %d, %q", code, errs)
	}
}
