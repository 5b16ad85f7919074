package daemon

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// TestBenchFLOPsMatchReference checks the GFLOPs `stardetr bench` derives from ONNX Runtime's
// profile against the PyTorch reference's own count (model/reference/report.py, forward
// hooks): at least the Conv2d+Linear total that ultralytics reports, at most that plus the
// attention matmuls, CARAFE and grid_sample taps (the profile counts the attention matmuls).
func TestBenchFLOPsMatchReference(t *testing.T) {
	root := testenv.RepoRoot(t)
	cfg := model.DefaultConfig()
	cfg.Path, cfg.Plugin, cfg.ONNXRuntime = testenv.Model(t, "seed-160.onnx"), testenv.Plugin(t), testenv.ONNXRuntime(t)
	cfg.Threads = 1
	frame := syntheticFrame(320, 240)
	defer frame.Close()
	res, err := Bench(context.Background(), cfg, frame, 1, 1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Profile
	if p == nil || p.Runs < 2 {
		t.Fatalf("profile %+v: want Open's run and the profiled one", p)
	}
	cmd := exec.Command(testenv.Python(), "-m", "model.reference.report", "--nc", "1", "--imgsz", "160")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("model.reference.report: %v", err)
	}
	m := regexp.MustCompile(`([0-9.]+) GFLOPs \(Conv2d\+Linear.*?([0-9.]+) GFLOPs\*`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("report output has no totals: %s", out)
	}
	thop, _ := strconv.ParseFloat(string(m[1]), 64)
	all, _ := strconv.ParseFloat(string(m[2]), 64)
	got := p.FLOPs / 1e9
	t.Logf("profile: %.3f GFLOPs; reference: %.2f (Conv2d+Linear) .. %.2f (everything)", got, thop, all)
	if got < thop*0.995 || got > all*1.005 {
		t.Errorf("profile counts %.3f GFLOPs; the reference bounds it to [%.2f, %.2f]", got, thop, all)
	}
	if p.Uncounted != 0 {
		t.Errorf("%d float32 matrix nodes uncounted", p.Uncounted)
	}
	if s := p.Share("MMCVCARAFE"); !(s > 0 && s < 0.2) {
		t.Errorf("CARAFE share %.3f: want a small positive share of the kernel time", s)
	}
}

func TestCPUPeak(t *testing.T) {
	x86 := "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\ncpu MHz\t\t: 2600.000\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.0\n"
	arm := "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 asimddp\n"
	for _, c := range []struct {
		name, info, khz string
		cores, fma      int
		want            float64 // GFLOP/s, computed by hand
		lanes           int
	}{
		{"avx512, current clock", x86, "", 1, 2, 1 * 16 * 2 * 2 * 2.6, 16},
		{"avx512, cpufreq max wins", x86, "3500000\n", 2, 2, 2 * 16 * 2 * 2 * 3.5, 16},
		{"avx2", "flags : sse2 avx2 fma\ncpu MHz : 3000\n", "", 4, 2, 4 * 8 * 2 * 2 * 3.0, 8},
		{"arm64 neon", arm, "1800000", 4, 2, 4 * 4 * 2 * 2 * 1.8, 4},
		{"no clock", arm, "", 4, 2, 0, 4},
	} {
		p := cpuPeak(c.info, c.khz, c.cores, c.fma, false)
		if p.Lanes != c.lanes || math.Abs(p.FLOPs/1e9-c.want) > 1e-6 {
			t.Errorf("%s: %d lanes, %.3f GFLOP/s; want %d, %.3f (%s)", c.name, p.Lanes, p.FLOPs/1e9, c.lanes, c.want, p)
		}
		if c.want == 0 && p.Unknown == "" {
			t.Errorf("%s: no reason given for the unknown peak", c.name)
		}
	}
}
