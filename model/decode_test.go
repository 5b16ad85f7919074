package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// pyCase is one postprocess call of testdata/pyref.py: ultralytics' RT-DETR postprocess in torch.
type pyCase struct {
	output         []float32
	info           model.Info
	frameW, frameH int
	conf           float64
	maxDet         int
	classes        []int
}

// pyDetections runs the cases in one Python process and returns, per case, rows
// x1, y1, x2, y2, score, class.
func pyDetections(t *testing.T, cases ...pyCase) [][][6]float64 {
	t.Helper()
	dir := t.TempDir()
	var args [][]string
	for i, c := range cases {
		raw := filepath.Join(dir, fmt.Sprintf("output%d.f32", i))
		writeFloats(t, raw, c.output)
		a := []string{raw, strconv.Itoa(c.info.Queries), strconv.Itoa(c.info.NumClasses),
			strconv.Itoa(c.frameW), strconv.Itoa(c.frameH), strconv.FormatFloat(c.conf, 'g', -1, 64), strconv.Itoa(c.maxDet)}
		if len(c.classes) > 0 {
			s := make([]string, len(c.classes))
			for i, id := range c.classes {
				s[i] = strconv.Itoa(id)
			}
			a = append(a, strings.Join(s, ","))
		}
		args = append(args, a)
	}
	js, _ := json.Marshal(args)
	file := filepath.Join(dir, "cases.json")
	if err := os.WriteFile(file, js, 0o644); err != nil {
		t.Fatal(err)
	}
	var rows [][][6]float64
	if err := json.Unmarshal(runPython(t, "testdata/pyref.py", "postprocess-many", file), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// compareDetections matches Go's detections with the reference rows: same count, and in
// score order the same class, score within scoreTol and box within boxTol pixels. Equal
// scores may come in either order, so both lists are put in a canonical order first.
func compareDetections(t *testing.T, got []model.Detection, want [][6]float64, scoreTol, boxTol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d detections; the reference has %d", len(got), len(want))
	}
	g := make([][6]float64, len(got))
	for i, d := range got {
		g[i] = [6]float64{float64(d.Box[0]), float64(d.Box[1]), float64(d.Box[2]), float64(d.Box[3]), float64(d.Score), float64(d.ClassID)}
	}
	canon := func(rows [][6]float64) {
		slices.SortStableFunc(rows, func(a, b [6]float64) int {
			for _, k := range []int{4, 5, 0, 1, 2, 3} {
				if a[k] != b[k] {
					if (k == 4) == (a[k] > b[k]) {
						return -1
					}
					return 1
				}
			}
			return 0
		})
	}
	canon(g)
	want = slices.Clone(want)
	canon(want)
	for i := range g {
		bad := g[i][5] != want[i][5] || math.Abs(g[i][4]-want[i][4]) > scoreTol
		for k := range 4 {
			bad = bad || math.Abs(g[i][k]-want[i][k]) > boxTol
		}
		if bad {
			t.Errorf("detection %d: got %v, reference %v", i, g[i], want[i])
		}
	}
}

func readFrame(t testing.TB, path string) gocv.Mat {
	t.Helper()
	m := gocv.IMRead(path, gocv.IMReadColor)
	if m.Empty() {
		t.Fatalf("cannot read %s", path)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestDecodeMatchesUltralytics(t *testing.T) {
	frame := readFrame(t, "testdata/frame.jpg")
	var cases []pyCase
	var got [][]model.Detection
	for _, c := range []pyCase{
		{conf: 0.25, maxDet: 100},
		{conf: 0, maxDet: 300},
		{conf: 0.5, maxDet: 5},
		{conf: 0.1, maxDet: 100, classes: []int{1}},
		{conf: 0.99, maxDet: 100},
	} {
		cfg := testConfig(t, testModel("good"))
		cfg.Conf, cfg.MaxDet, cfg.Classes = c.conf, c.maxDet, c.classes
		d := openDetector(t, cfg)
		dets, _, err := d.Detect(frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, det := range dets {
			if det.Label != d.Info().Names[det.ClassID] {
				t.Errorf("label %q for class %d", det.Label, det.ClassID)
			}
		}
		c.output, c.info, c.frameW, c.frameH = slices.Clone(d.DefaultInput().Output()), d.Info(), frame.Cols(), frame.Rows()
		cases = append(cases, c)
		got = append(got, dets)
	}
	want := pyDetections(t, cases...)
	for i, c := range cases {
		t.Run(fmt.Sprintf("conf%v_max%d_classes%v", c.conf, c.maxDet, c.classes), func(t *testing.T) {
			t.Logf("%d detections", len(got[i]))
			compareDetections(t, got[i], want[i], 1e-6, 1e-3)
		})
	}
}

// TestPreprocessMatchesBilinearReference compares Go's input tensor with an independent
// numpy implementation of OpenCV's INTER_LINEAR (half-pixel centres), RGB, /255. OpenCV
// resizes 8-bit images in fixed point, so values may differ by about one grey level.
func TestPreprocessMatchesBilinearReference(t *testing.T) {
	frame := readFrame(t, "testdata/frame.jpg")
	// 240x320 is the frame's own size (no resize); the model without metadata has no stride.
	for _, size := range [][2]int{{64, 64}, {128, 192}, {480, 640}, {256, 320}, {240, 320}} {
		t.Run(fmt.Sprintf("%dx%d", size[1], size[0]), func(t *testing.T) {
			cfg := testConfig(t, testModel("dynamic_nometa"))
			cfg.Imgsz = size[:]
			d := openDetector(t, cfg)
			if err := d.Preprocess(frame); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			bgr, err := frame.DataPtrUint8()
			if err != nil {
				t.Fatal(err)
			}
			rawIn, rawOut := filepath.Join(dir, "frame.bgr"), filepath.Join(dir, "input.f32")
			if err := os.WriteFile(rawIn, bgr, 0o644); err != nil {
				t.Fatal(err)
			}
			runPython(t, "testdata/pyref.py", "resize", rawIn, strconv.Itoa(frame.Rows()), strconv.Itoa(frame.Cols()),
				strconv.Itoa(size[0]), strconv.Itoa(size[1]), rawOut)
			want := readFloats(t, rawOut)
			got := d.DefaultInput().Tensor()
			if len(got) != len(want) {
				t.Fatalf("tensor has %d values; reference %d", len(got), len(want))
			}
			var maxDiff, sum float64
			for i := range got {
				diff := math.Abs(float64(got[i]) - float64(want[i]))
				maxDiff = max(maxDiff, diff)
				sum += diff
			}
			t.Logf("max |diff| = %.5f (%.2f grey levels), mean %.6f", maxDiff, maxDiff*255, sum/float64(len(got)))
			if maxDiff > 1.01/255 {
				t.Errorf("max |diff| = %v; want <= 1/255", maxDiff)
			}
		})
	}
}

func TestPreprocessFrameKinds(t *testing.T) {
	d := openDetector(t, testConfig(t, testModel("good")))
	bgr := readFrame(t, "testdata/frame.jpg")
	gray, bgra := gocv.NewMat(), gocv.NewMat()
	defer gray.Close()
	defer bgra.Close()
	gocv.CvtColor(bgr, &gray, gocv.ColorBGRToGray)
	gocv.CvtColor(bgr, &bgra, gocv.ColorBGRToBGRA)
	if err := d.Preprocess(bgra); err != nil {
		t.Fatalf("BGRA: %v", err)
	}
	fromBGRA := slices.Clone(d.DefaultInput().Tensor())
	if err := d.Preprocess(bgr); err != nil {
		t.Fatalf("BGR: %v", err)
	}
	if !slices.Equal(fromBGRA, d.DefaultInput().Tensor()) {
		t.Error("BGRA frame preprocessed differently from its BGR twin")
	}
	if err := d.Preprocess(gray); err != nil {
		t.Fatalf("gray: %v", err)
	}
	in := d.DefaultInput().Tensor()
	n := len(in) / 3
	if !slices.Equal(in[:n], in[n:2*n]) || !slices.Equal(in[:n], in[2*n:]) {
		t.Error("gray frame: channels differ")
	}
	empty := gocv.NewMat()
	defer empty.Close()
	testenv.WantError(t, d.Preprocess(empty), "empty frame")
	f32 := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV32FC3)
	defer f32.Close()
	testenv.WantError(t, d.Preprocess(f32), "expected 8-bit BGR")
	_, _, err := d.Detect(empty, nil)
	testenv.WantError(t, err, "empty frame")
}

// TestInputsRunConcurrently checks that two Inputs of one Detector can be used at the same
// time (the pipeline preprocesses frame n+1 while frame n runs) and give the same results.
func TestInputsRunConcurrently(t *testing.T) {
	d := openDetector(t, testConfig(t, testModel("good")))
	frame := readFrame(t, "testdata/frame.jpg")
	want, _, err := d.Detect(frame, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.NewInput()
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.NewInput()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	errs := make(chan error, 2)
	results := make([][]model.Detection, 2)
	for i, in := range []*model.Input{a, b} {
		go func() {
			var out []model.Detection
			for range 20 {
				var err error
				if out, _, err = in.Detect(frame, out); err != nil {
					errs <- err
					return
				}
			}
			results[i] = out
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range results {
		if !slices.Equal(r, want) {
			t.Errorf("input %d: %v; want %v", i, r, want)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
