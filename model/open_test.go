package model_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

func TestOpenReadsShapeAndMetadata(t *testing.T) {
	d := openDetector(t, testConfig(t, testModel("good")))
	info := d.Info()
	if info.Height != 64 || info.Width != 64 || info.Queries != 64 || info.NumClasses != 2 || info.Stride != 32 {
		t.Errorf("info = %+v; want 64x64, 64 queries, 2 classes, stride 32", info)
	}
	if want := []string{"person", `car's "best"`}; !slices.Equal(info.Names, want) {
		t.Errorf("names = %q; want %q", info.Names, want)
	}
	if info.Provider != model.ProviderCPU || info.HasCARAFE || info.Model != "good" || len(info.SHA256) != 12 {
		t.Errorf("info = %+v", info)
	}
}

func TestOpenSymbolicOutputResolvedByRun(t *testing.T) {
	// Dynamic axes everywhere, output0 symbolic: size from metadata, [1,Q,4+nc] from the first run.
	d := openDetector(t, testConfig(t, testModel("dynamic")))
	if info := d.Info(); info.Height != 64 || info.Queries != 64 || info.NumClasses != 2 {
		t.Errorf("info = %+v; want 64x64, 64 queries, 2 classes", info)
	}
	cfg := testConfig(t, testModel("dynamic"))
	cfg.Imgsz = []int{128, 192}
	d = openDetector(t, cfg)
	if info := d.Info(); info.Height != 128 || info.Width != 192 || info.Queries != 16*24 {
		t.Errorf("info = %+v; want 192x128 and 384 queries", info)
	}
}

func TestOpenWithoutMetadata(t *testing.T) {
	d := openDetector(t, testConfig(t, testModel("nometa")))
	if info := d.Info(); !slices.Equal(info.Names, []string{"class0", "class1"}) || info.Stride != 0 {
		t.Errorf("info = %+v; want class0, class1", info)
	}
	_, err := model.Open(context.Background(), testConfig(t, testModel("dynamic_nometa")), t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "dynamic height and width", "model.imgsz")
	cfg := testConfig(t, testModel("dynamic_nometa"))
	cfg.Imgsz = []int{64}
	cfg.Names = map[int]string{1: "bike"}
	d = openDetector(t, cfg)
	if info := d.Info(); !slices.Equal(info.Names, []string{"class0", "bike"}) || info.Queries != 64 {
		t.Errorf("info = %+v; want names class0, bike and 64 queries", info)
	}
}

func TestConfigNamesOverrideModel(t *testing.T) {
	cfg := testConfig(t, testModel("good"))
	cfg.Names = map[int]string{0: "human"}
	if got := openDetector(t, cfg).Info().Names; !slices.Equal(got, []string{"human", `car's "best"`}) {
		t.Errorf("names = %q", got)
	}
	cfg.Names = map[int]string{5: "ghost"}
	_, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.names", "class id 5", "2 classes")
}

func TestOpenRejectsBadModels(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(testModel("good"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.onnx")
	os.WriteFile(truncated, good[:len(good)/2], 0o644)
	text := filepath.Join(dir, "text.onnx")
	os.WriteFile(text, []byte("this is not a model\n"), 0o644)
	empty := filepath.Join(dir, "empty.onnx")
	os.WriteFile(empty, nil, 0o644)

	for _, c := range []struct {
		path string
		want []string
	}{
		{filepath.Join(dir, "missing.onnx"), []string{"model.path", "does not exist"}},
		{truncated, []string{"not a readable ONNX model", "truncated"}},
		{text, []string{"not a readable ONNX model"}},
		{empty, []string{"not a readable ONNX model"}},
		{dir, []string{"model.path", "reading"}},
		{testModel("segment"), []string{`task is "segment"`, "detect"}},
		{testModel("yolo"), []string{"[1,6,64]", "4+2=6", "YOLO"}},
		{testModel("rank2"), []string{"rank 2", "expected rank 3"}},
		{testModel("badinput"), []string{`"x" [1,3,64,64]`, `expected one input "images"`}},
		{testModel("badoutput"), []string{`"boxes"`, `expected "output0"`}},
		{testModel("batch4"), []string{"fixed batch of 4", "one frame at a time"}},
		{testModel("badnames"), []string{"metadata 'names'", "{0: 'person', 1: 'car'}"}},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			_, err := model.Open(context.Background(), testConfig(t, c.path), t.TempDir(), testLogger(t))
			testenv.WantError(t, err, c.want...)
		})
	}
}

func TestOpenRejectsSizeMismatch(t *testing.T) {
	cfg := testConfig(t, testModel("good"))
	cfg.Imgsz = []int{128, 128}
	_, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.imgsz is [128, 128]", "fixed at 64x64")
	cfg = testConfig(t, testModel("dynamic"))
	cfg.Imgsz = []int{100}
	_, err = model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "not a multiple of the model's stride 32")
}

func TestOpenRejectsBadConfig(t *testing.T) {
	cfg := testConfig(t, testModel("good"))
	cfg.Conf = 1.5
	cfg.MaxDet = 0
	cfg.Providers = []string{"gpu"}
	cfg.GraphOpt = "max"
	_, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.conf", "model.max_det", "model.providers[0]", "model.graph_opt")
	cfg = testConfig(t, testModel("good"))
	cfg.Classes = []int{7}
	_, err = model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.classes", "class id 7")
}

func TestProviderChainFallsBackToCPU(t *testing.T) {
	// The npm ONNX Runtime build has neither TensorRT nor CUDA: both are logged and skipped.
	cfg := testConfig(t, testModel("good"))
	cfg.Providers = []string{model.ProviderTensorRT, model.ProviderCUDA, model.ProviderCPU}
	info := openDetector(t, cfg).Info()
	if info.Provider != model.ProviderCPU || len(info.Skipped) != 2 {
		t.Fatalf("provider %q, skipped %q; want cpu after tensorrt and cuda failed", info.Provider, info.Skipped)
	}
	t.Logf("skipped: %q", info.Skipped)
	cfg.Providers = []string{model.ProviderCUDA}
	_, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.providers", "none of [cuda] could be used")
	if got := model.DefaultProviders(testenv.ONNXRuntime(t)); !slices.Equal(got, []string{"cpu"}) {
		t.Errorf("DefaultProviders = %q; want [cpu] for the CPU-only library", got)
	}
}

func TestModelWithMMCVNeedsPlugin(t *testing.T) {
	cfg := testConfig(t, testModel("mmcv"))
	_, err := model.OpenWith(context.Background(), cfg, t.TempDir(), testLogger(t), noLibs)
	testenv.WantError(t, err, "1 mmcv::MMCVCARAFE node", "CARAFE plugin not found", "make plugin")
	cfg.Plugin = filepath.Join(t.TempDir(), "libnothing.so")
	_, err = model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "libnothing.so (configured)")
}

func TestModelWithMMCVRunsWithPlugin(t *testing.T) {
	// k=1, s=1, G=1 CARAFE is features*mask: the mmcv graph must match its Mul twin.
	cfg := testConfig(t, testModel("mmcv"))
	cfg.Plugin = testenv.Plugin(t)
	d := openDetector(t, cfg)
	if !d.Info().HasCARAFE || d.Info().Plugin != cfg.Plugin {
		t.Errorf("info = %+v; want CARAFE with plugin %s", d.Info(), cfg.Plugin)
	}
	twin := openDetector(t, testConfig(t, testModel("mmcv_equiv")))
	for i, v := range []*model.Detector{d, twin} {
		in := v.DefaultInput().Tensor()
		for j := range in {
			in[j] = float32((j*7919)%251) / 251
		}
		if err := v.Infer(); err != nil {
			t.Fatalf("model %d: %v", i, err)
		}
	}
	a, b := d.DefaultInput().Output(), twin.DefaultInput().Output()
	for i := range a {
		if diff := a[i] - b[i]; diff > 1e-6 || diff < -1e-6 {
			t.Fatalf("output[%d] = %v with CARAFE, %v with Mul", i, a[i], b[i])
		}
	}
}

func TestModelWithMMCVDynamicAxes(t *testing.T) {
	// Dynamic spatial axes through the custom node: the plugin's shape inference must leave
	// unknown dimensions unknown, or ONNX Runtime's Reshape after it computes a wrong shape.
	cfg := testConfig(t, testModel("mmcv_dynamic"))
	cfg.Plugin = testenv.Plugin(t)
	cfg.Imgsz = []int{64, 128}
	d := openDetector(t, cfg)
	if info := d.Info(); info.Queries != 128 || info.NumClasses != 2 {
		t.Errorf("info = %+v; want 128 queries, 2 classes", info)
	}
}
