package gotest_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/stardetr/stardetr/internal/testenv"
)

// The ONNX Runtime environment is process-global: initialised once by the first test that needs
// it and destroyed by TestMain.
var ortOnce sync.Once

func TestMain(m *testing.M) {
	code := m.Run()
	if ort.IsInitialized() {
		if err := ort.DestroyEnvironment(); err != nil {
			fmt.Fprintf(os.Stderr, "destroy ONNX Runtime environment: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func initORT(t *testing.T) {
	t.Helper()
	lib := testenv.ONNXRuntime(t)
	var err error
	ortOnce.Do(func() {
		ort.SetSharedLibraryPath(lib)
		err = ort.InitializeEnvironment()
	})
	if err != nil {
		t.Fatalf("initialise ONNX Runtime from %s: %v", lib, err)
	}
	if !ort.IsInitialized() {
		t.Fatalf("ONNX Runtime environment failed to initialise earlier in this test binary")
	}
}

type graphCase struct {
	Name     string  `json:"name"`
	Features []int64 `json:"features"`
	Masks    []int64 `json:"masks"`
	Output   []int64 `json:"output"`
}

// graphs writes the test graphs, inputs and numpy-computed expected outputs into a temp dir
// with carafe_graphs.py and returns the dir and the cases.
func graphs(t *testing.T) (string, []graphCase) {
	t.Helper()
	py := os.Getenv("STARDETR_PYTHON")
	if py == "" {
		py = "/usr/bin/python3" // Debian's, with python3-onnx and python3-numpy
	}
	dir := t.TempDir()
	script := filepath.Join(testenv.RepoRoot(t), "model", "carafe", "carafe_graphs.py")
	out, err := exec.Command(py, script, "test", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s test %s: %v\n%s (needs python3-onnx and python3-numpy; set STARDETR_PYTHON)", py, script, dir, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatalf("read cases: %v", err)
	}
	var cases []graphCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("parse cases.json: %v", err)
	}
	return dir, cases
}

// readFloats reads a raw little-endian float32 file holding exactly prod(shape) values.
func readFloats(t *testing.T, path string, shape []int64) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	n := ort.Shape(shape).FlattenedSize()
	if int64(len(b)) != 4*n {
		t.Fatalf("%s: %d bytes, want %d for shape %v", path, len(b), 4*n, shape)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func newOptions(t *testing.T, threads int) *ort.SessionOptions {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatalf("session options: %v", err)
	}
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		t.Fatalf("intra-op threads: %v", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatalf("inter-op threads: %v", err)
	}
	plugin := testenv.Plugin(t)
	if err := opts.RegisterCustomOpsLibrary(plugin); err != nil {
		t.Fatalf("register %s: %v", plugin, err)
	}
	return opts
}

func newSession(t *testing.T, path string, opts *ort.SessionOptions) *ort.DynamicAdvancedSession {
	t.Helper()
	s, err := ort.NewDynamicAdvancedSession(path, []string{"features", "masks"}, []string{"output"}, opts)
	if err != nil {
		t.Fatalf("session for %s: %v", path, err)
	}
	return s
}

func tensor(t *testing.T, shape []int64, data []float32) *ort.Tensor[float32] {
	t.Helper()
	v, err := ort.NewTensor(ort.Shape(shape), data)
	if err != nil {
		t.Fatalf("tensor %v: %v", shape, err)
	}
	t.Cleanup(func() { _ = v.Destroy() })
	return v
}

// run runs the session and returns the output ONNX Runtime allocated.
func run(s *ort.DynamicAdvancedSession, features, masks ort.Value) (*ort.Tensor[float32], error) {
	out := []ort.Value{nil}
	if err := s.Run([]ort.Value{features, masks}, out); err != nil {
		return nil, err
	}
	tv, ok := out[0].(*ort.Tensor[float32])
	if !ok {
		_ = out[0].Destroy()
		return nil, fmt.Errorf("output is %T, want *Tensor[float32]", out[0])
	}
	return tv, nil
}

func checkOutput(t *testing.T, what string, got *ort.Tensor[float32], shape []int64, want []float32) {
	t.Helper()
	if gs := got.GetShape(); fmt.Sprint([]int64(gs)) != fmt.Sprint(shape) {
		t.Fatalf("%s: output shape %v, want %v", what, gs, shape)
	}
	worst, at := 0.0, 0
	for i, g := range got.GetData() {
		d := math.Abs(float64(g) - float64(want[i]))
		if !(d <= worst) { // NaN counts as the worst
			worst, at = d, i
			if math.IsNaN(d) {
				break
			}
		}
	}
	if !(worst <= 1e-5) {
		t.Fatalf("%s: max |output - numpy| = %g at %d, want <= 1e-5", what, worst, at)
	}
}

func TestCARAFEMatchesNumpy(t *testing.T) {
	initORT(t)
	dir, cases := graphs(t)
	for _, threads := range []int{1, 2} {
		opts := newOptions(t, threads)
		for _, c := range cases {
			name := fmt.Sprintf("%s/threads=%d", c.Name, threads)
			s := newSession(t, filepath.Join(dir, c.Name+".onnx"), opts)
			f := tensor(t, c.Features, readFloats(t, filepath.Join(dir, c.Name+".features.bin"), c.Features))
			m := tensor(t, c.Masks, readFloats(t, filepath.Join(dir, c.Name+".masks.bin"), c.Masks))
			want := readFloats(t, filepath.Join(dir, c.Name+".expected.bin"), c.Output)
			got, err := run(s, f, m)
			if err != nil {
				t.Fatalf("%s: run: %v", name, err)
			}
			checkOutput(t, name, got, c.Output, want)
			_ = got.Destroy()
			if err := s.Destroy(); err != nil {
				t.Fatalf("%s: destroy session: %v", name, err)
			}
		}
		if err := opts.Destroy(); err != nil {
			t.Fatalf("destroy options: %v", err)
		}
	}
}

func TestCARAFERejectsBadAttributesAndShapes(t *testing.T) {
	initORT(t)
	dir, _ := graphs(t)
	opts := newOptions(t, 1)
	defer opts.Destroy()

	// kernel_size=4: refused when the kernel is created, i.e. at session creation.
	_, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, "bad_even_k.onnx"),
		[]string{"features", "masks"}, []string{"output"}, opts)
	testenv.WantError(t, err, `"bad_even_k"`, "kernel_size=4", "odd")

	// bad_shapes: k=3, group_size=2, scale_factor=2; the shapes reach the kernel at run time.
	s := newSession(t, filepath.Join(dir, "bad_shapes.onnx"), opts)
	defer s.Destroy()
	zeros := func(shape ...int64) *ort.Tensor[float32] {
		return tensor(t, shape, make([]float32, ort.Shape(shape).FlattenedSize()))
	}
	for _, c := range []struct {
		what        string
		feat, masks []int64
		parts       []string
	}{
		{"C % G", []int64{1, 3, 4, 4}, []int64{1, 18, 8, 8}, []string{"C=3", "group_size=2", "C % G == 0"}},
		{"masks channels", []int64{1, 4, 4, 4}, []int64{1, 9, 8, 8}, []string{"masks channels=9", "18"}},
		{"masks size", []int64{1, 4, 4, 5}, []int64{1, 18, 8, 8}, []string{"masks size 8x8", "4x5", "scale_factor=2"}},
		{"batch", []int64{2, 4, 4, 4}, []int64{1, 18, 8, 8}, []string{"batch"}},
	} {
		got, err := run(s, zeros(c.feat...), zeros(c.masks...))
		if got != nil {
			_ = got.Destroy()
		}
		testenv.WantError(t, err, append([]string{`"bad_shapes"`}, c.parts...)...)
	}
	// A good call on the same session still works after the refusals.
	got, err := run(s, zeros(1, 4, 4, 4), zeros(1, 18, 8, 8))
	if err != nil {
		t.Fatalf("valid run after refusals: %v", err)
	}
	_ = got.Destroy()
}

// The library is registered into every session options object the daemon creates (reloads,
// provider fallbacks): many registrations in one process, and several live sessions at once.
func TestCARAFEManySessions(t *testing.T) {
	initORT(t)
	dir, cases := graphs(t)
	c := cases[0]
	path := filepath.Join(dir, c.Name+".onnx")
	f := tensor(t, c.Features, readFloats(t, filepath.Join(dir, c.Name+".features.bin"), c.Features))
	m := tensor(t, c.Masks, readFloats(t, filepath.Join(dir, c.Name+".masks.bin"), c.Masks))
	want := readFloats(t, filepath.Join(dir, c.Name+".expected.bin"), c.Output)

	for i := 0; i < 50; i++ {
		opts := newOptions(t, 1+i%2)
		s := newSession(t, path, opts)
		got, err := run(s, f, m)
		if err != nil {
			t.Fatalf("session %d: run: %v", i, err)
		}
		checkOutput(t, fmt.Sprintf("session %d", i), got, c.Output, want)
		_ = got.Destroy()
		if err := s.Destroy(); err != nil {
			t.Fatalf("session %d: destroy: %v", i, err)
		}
		if err := opts.Destroy(); err != nil {
			t.Fatalf("session %d: destroy options: %v", i, err)
		}
	}

	// Two live at once, each with its own options, used in turn and then concurrently.
	var live [2]*ort.DynamicAdvancedSession
	for i := range live {
		opts := newOptions(t, 2)
		live[i] = newSession(t, path, opts)
		defer live[i].Destroy()
		defer opts.Destroy()
	}
	for round := 0; round < 3; round++ {
		for i, s := range live {
			got, err := run(s, f, m)
			if err != nil {
				t.Fatalf("live session %d round %d: %v", i, round, err)
			}
			checkOutput(t, fmt.Sprintf("live session %d round %d", i, round), got, c.Output, want)
			_ = got.Destroy()
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(live)*4)
	for _, s := range live {
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func(s *ort.DynamicAdvancedSession) {
				defer wg.Done()
				got, err := run(s, f, m)
				if err != nil {
					errs <- err
					return
				}
				defer got.Destroy()
				for i, g := range got.GetData() {
					if d := math.Abs(float64(g) - float64(want[i])); !(d <= 1e-5) {
						errs <- fmt.Errorf("concurrent run: |diff| %g at %d", d, i)
						return
					}
				}
			}(s)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The plugin infers [N, C, H*s, W*s], so a graph need not declare the shapes after a CARAFE node
// (an ultralytics export leaves them out).
func TestCARAFEInfersOutputShape(t *testing.T) {
	initORT(t)
	dir, _ := graphs(t)
	opts := newOptions(t, 1)
	defer opts.Destroy()
	_, outs, err := ort.GetInputOutputInfoWithOptions(filepath.Join(dir, "output_shape_inferred.onnx"), opts)
	if err != nil {
		t.Fatalf("input/output info: %v", err)
	}
	if len(outs) != 1 || fmt.Sprint([]int64(outs[0].Dimensions)) != "[2 6 10 14]" {
		t.Fatalf("inferred outputs %+v, want one output [2 6 10 14]", outs)
	}
}
