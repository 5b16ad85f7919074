package model_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// cc builds a shared library from C source with extra linker arguments.
func cc(t *testing.T, out, src string, args ...string) string {
	t.Helper()
	c := filepath.Join(t.TempDir(), "lib.c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := append([]string{"-shared", "-fPIC", "-o", out, c}, args...)
	if b, err := exec.Command("cc", cmd...).CombinedOutput(); err != nil {
		t.Fatalf("cc %v: %v\n%s", cmd, err, b)
	}
	return out
}

// Stand-ins for TensorRT's libnvinfer.so.N (the soname is what matters), plugin libraries and
// ONNX Runtime TensorRT providers that link them, built by the test: a plugin of another
// TensorRT major than the provider's is refused naming both and the fix; one the loader cannot
// open gets the loader's message (what ONNX Runtime would only log as a warning); one that fits
// loads.
func TestCheckTensorRTPlugin(t *testing.T) {
	dir := t.TempDir()
	nvinfer := func(major string) string {
		d := filepath.Join(dir, "trt"+major)
		cc(t, filepath.Join(d, "libnvinfer.so."+major), "int getPluginRegistry(void) { return 0; }\n", "-Wl,-soname,libnvinfer.so."+major)
		return d
	}
	trt8, trt10 := nvinfer("8"), nvinfer("10")
	const pluginSrc = "extern int getPluginRegistry(void);\nint registered(void) { return getPluginRegistry(); }\n"
	plugin8 := cc(t, filepath.Join(dir, "p8", "libstardetr_carafe_trt.so"), pluginSrc, "-L"+trt8, "-l:libnvinfer.so.8", "-Wl,-rpath,"+trt8)
	// TensorRT "9" is never loaded by this test (a soname the process has loaded satisfies any
	// later library that needs it): the loader cannot find it.
	trt9 := nvinfer("9")
	plugin9Unresolved := cc(t, filepath.Join(dir, "p9", "libstardetr_carafe_trt.so"), pluginSrc, "-L"+trt9, "-l:libnvinfer.so.9")
	notTRT := cc(t, filepath.Join(dir, "plain", "libplain.so"), "int f(void) { return 1; }\n")
	provider := func(name, trtDir, major string) string {
		d := filepath.Join(dir, name)
		cc(t, filepath.Join(d, model.TensorRTProviderLib), pluginSrc, "-L"+trtDir, "-l:libnvinfer.so."+major)
		return filepath.Join(d, "libonnxruntime.so.1") // only its folder is used
	}
	ort8, ort9, ort10 := provider("ort8", trt8, "8"), provider("ort9", trt9, "9"), provider("ort10", trt10, "10")
	noProvider := filepath.Join(dir, "cpu-ort", "libonnxruntime.so.1")
	text := filepath.Join(dir, "text.so")
	if err := os.WriteFile(text, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, plugin, ort string
		want              []string // nil: no error
	}{
		{"same major", plugin8, ort8, nil},
		{"no TensorRT provider next to ONNX Runtime", plugin8, noProvider, nil},
		{"another major", plugin8, ort10, []string{"model.tensorrt.plugin", plugin8, "built for TensorRT 8 (it links libnvinfer.so.8)",
			"uses TensorRT 10 (libnvinfer.so.10)", "make cuda-plugin", "PKG_CUDA_PLUGIN=1"}},
		{"loader fails", plugin9Unresolved, ort9, []string{"model.tensorrt.plugin: loading " + plugin9Unresolved,
			"libnvinfer.so.9: cannot open shared object file", "make cuda-plugin"}},
		{"not a TensorRT plugin", notTRT, ort8, []string{"does not link TensorRT", "libstardetr_carafe_trt.so"}},
		{"not a library", text, ort8, []string{"model.tensorrt.plugin", text, "is not a shared library"}},
		{"missing", filepath.Join(dir, "gone.so"), ort8, []string{"gone.so does not exist"}},
	} {
		err := model.CheckTensorRTPlugin(c.plugin, c.ort)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		testenv.WantError(t, err, c.want...)
	}
}

// model.tensorrt.plugin is looked for only for a model with CARAFE nodes and TensorRT in the
// chain; a configured file that is missing is one error naming the key. This ONNX Runtime has no
// TensorRT provider, so the session falls back to the CPU and the plugin is only recorded.
func TestTensorRTPluginConfig(t *testing.T) {
	cfg := testConfig(t, testModel("mmcv"))
	cfg.Plugin = testenv.Plugin(t)
	cfg.Providers = []string{model.ProviderTensorRT, model.ProviderCPU}
	cfg.TensorRT.Plugin = filepath.Join(t.TempDir(), "libstardetr_carafe_trt.so")
	_, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	testenv.WantError(t, err, "model.tensorrt.plugin", "TensorRT CARAFE plugin not found", "libstardetr_carafe_trt.so (configured)", "make cuda-plugin")

	// Without TensorRT in the chain, or without CARAFE nodes, the key is not looked at.
	cfg.Providers = []string{model.ProviderCPU}
	if info := openDetector(t, cfg).Info(); info.TensorRTPlugin != "" || info.Provider != model.ProviderCPU {
		t.Errorf("cpu only: TensorRT plugin %q, provider %s", info.TensorRTPlugin, info.Provider)
	}
	good := testConfig(t, testModel("good"))
	good.Providers = []string{model.ProviderTensorRT, model.ProviderCPU}
	good.TensorRT.Plugin = cfg.TensorRT.Plugin
	if info := openDetector(t, good).Info(); info.TensorRTPlugin != "" {
		t.Errorf("model without CARAFE: TensorRT plugin %q", info.TensorRTPlugin)
	}

	// Present: recorded for the TensorRT provider, which this ONNX Runtime does not have.
	if err := os.WriteFile(cfg.TensorRT.Plugin, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Providers = []string{model.ProviderTensorRT, model.ProviderCPU}
	info := openDetector(t, cfg).Info()
	if info.TensorRTPlugin != cfg.TensorRT.Plugin || info.Provider != model.ProviderCPU || len(info.Skipped) != 1 ||
		!strings.HasPrefix(info.Skipped[0], "tensorrt: ") {
		t.Errorf("TensorRT plugin %q, provider %s, skipped %q; want the plugin recorded, cpu after tensorrt", info.TensorRTPlugin, info.Provider, info.Skipped)
	}
}

// The profile says which provider ran each node; the TensorRT engines are the TensorRT
// provider's fused TRTKernel_graph_* nodes. A real profile of a CPU session of the demo's tiny
// model (CARAFE plugin included), then the same profile with three of its nodes as ONNX
// Runtime's TensorRT provider records them (two engines and a memory copy).
func TestProfileNodesPerProvider(t *testing.T) {
	cfg := testConfig(t, testenv.Model(t, "tiny.onnx"))
	cfg.Plugin = testenv.Plugin(t)
	dir := t.TempDir()
	cfg.ProfilePrefix = filepath.Join(dir, "ort")
	d, err := model.Open(context.Background(), cfg, t.TempDir(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(cfg.ProfilePrefix + "*.json")
	if len(files) != 1 {
		t.Fatalf("%d profiles", len(files))
	}
	p, err := model.ReadProfile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for _, o := range p.Ops {
		nodes += o.Nodes
	}
	if len(p.Providers) != 1 || p.Providers["CPUExecutionProvider"] != nodes || nodes < 10 || p.TensorRTEngines != 0 {
		t.Fatalf("providers %v, %d nodes, %d TensorRT engines; want every node on CPUExecutionProvider, no engine", p.Providers, nodes, p.TensorRTEngines)
	}

	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	if err := json.Unmarshal(b, &events); err != nil {
		t.Fatal(err)
	}
	ops := []string{"TRTKernel_graph_main_graph_1234_0", "TRTKernel_graph_main_graph_1234_1", "MemcpyToHost"}
	renamed := map[string]string{} // node event name -> its new op
	for _, e := range events {
		name, _ := e["name"].(string)
		args, _ := e["args"].(map[string]any)
		if e["cat"] != "Node" || !strings.HasSuffix(name, "_kernel_time") || args == nil {
			continue
		}
		if _, ok := renamed[name]; !ok && len(renamed) < len(ops) {
			renamed[name] = ops[len(renamed)]
		}
		if op, ok := renamed[name]; ok { // every run of that node
			args["provider"], args["op_name"] = model.TensorRTProviderName, op
		}
	}
	if b, err = json.Marshal(events); err != nil {
		t.Fatal(err)
	}
	trt := filepath.Join(dir, "trt.json")
	if err := os.WriteFile(trt, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = model.ReadProfile(trt); err != nil {
		t.Fatal(err)
	}
	if p.TensorRTEngines != 2 || p.Providers[model.TensorRTProviderName] != 3 || p.Providers["CPUExecutionProvider"] != nodes-3 {
		t.Errorf("providers %v, %d engines; want 3 TensorrtExecutionProvider nodes, 2 of them engines, %d on the CPU", p.Providers, p.TensorRTEngines, nodes-3)
	}
}
