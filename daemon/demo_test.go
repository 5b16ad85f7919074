package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/daemon"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
)

// gtBox is one row of model.data.synth's MOT ground truth.
type gtBox struct {
	id, class      int
	x1, y1, x2, y2 float64
}

// mot is g in frame as a ground-truth box for testenv.MOTMetrics.
func (g gtBox) mot(frame int) testenv.MOTBox {
	return testenv.MOTBox{Frame: frame, GT: true, ID: g.id, Class: g.class, X1: g.x1, Y1: g.y1, X2: g.x2, Y2: g.y2}
}

// demoDetections is the part of a detections message the demo tests read.
type demoDetections struct {
	Frame      int `json:"frame"`
	Detections []struct {
		ClassID int        `json:"class_id"`
		Label   string     `json:"label"`
		Box     [4]float64 `json:"box"`
		TrackID *int       `json:"track_id"`
	} `json:"detections"`
}

func readSynthGT(t *testing.T, path string) map[int][]gtBox {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gt := map[int][]gtBox{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v := strings.Split(sc.Text(), ",")
		if len(v) != 9 {
			t.Fatalf("%s: %q: want 9 fields", path, sc.Text())
		}
		var n [9]float64
		for i, s := range v {
			if n[i], err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatalf("%s: %q: %v", path, sc.Text(), err)
			}
		}
		gt[int(n[0])] = append(gt[int(n[0])], gtBox{int(n[1]), int(n[7]), n[2], n[3], n[2] + n[4], n[3] + n[5]})
	}
	return gt
}

func iou(a, b [4]float64) float64 {
	w := min(a[2], b[2]) - max(a[0], b[0])
	h := min(a[3], b[3]) - max(a[1], b[1])
	if w <= 0 || h <= 0 {
		return 0
	}
	inter := w * h
	return inter / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter)
}

// demoClip writes model.data.synth's tracking clip (640×360, 10 fps, seed 0: the demo's own
// picture, `frames` long; extra: more options, e.g. --still) into dir and returns its ground
// truth by frame.
func demoClip(t *testing.T, dir string, frames int, extra ...string) map[int][]gtBox {
	t.Helper()
	cmd := exec.Command(testenv.Python(), append([]string{"-m", "model.data.synth", "--out", dir, "--video",
		"--frames", strconv.Itoa(frames), "--width", "640", "--height", "360", "--fps", "10", "--seed", "0"}, extra...)...)
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+cmd.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python -m model.data.synth --video: %v\n%s", err, out)
	}
	return readSynthGT(t, filepath.Join(dir, "gt.txt"))
}

// demoConfig is configs/demo.yaml as shipped with its paths and ports replaced (the clip in dir,
// the exported demo model), edited by the replacements in extra, written into dir.
func demoConfig(t *testing.T, dir, model string, mqttPort, httpPort int, extra ...string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"../build/demo/state", filepath.Join(dir, "state"),
		"../build/models/demo-160.onnx", model,
		"../build/demo/clip.mp4", filepath.Join(dir, "clip.mp4"),
		"127.0.0.1:18830", fmt.Sprintf("127.0.0.1:%d", mqttPort),
		"127.0.0.1:9110", fmt.Sprintf("127.0.0.1:%d", httpPort),
	).Replace(string(shipped))
	for i := 0; i+1 < len(extra); i += 2 {
		if !strings.Contains(cfg, extra[i]) {
			t.Fatalf("configs/demo.yaml changed shape: %q not in it", extra[i])
		}
		cfg = strings.Replace(cfg, extra[i], extra[i+1], 1)
	}
	for _, want := range []string{model, "clip.mp4", strconv.Itoa(mqttPort), strconv.Itoa(httpPort), "enabled: true", "zones:"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("configs/demo.yaml changed shape: %q not in the rewritten config:\n%s", want, cfg)
		}
	}
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// demoModel is the demo model `make models` exported from the committed, trained weights.
func demoModel(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(t), "model", "weights", "demo", "manifest.json")); err != nil {
		t.Fatalf("no trained demo weights (model/weights/demo/manifest.json: %v): `make models` exported "+
			"random weights; commit the trained parts (python -m model.ultralytics.weights split)", err)
	}
	return testenv.Model(t, "demo-160.onnx")
}

// The demo that `make run` starts, as shipped (configs/demo.yaml: the demo model trained on
// model.data.synth, tracking, one zone), on a synthetic moving-shapes clip: tracked detections
// lie on the clip's ground-truth shapes of their class, events and zone counts arrive over MQTT,
// and the live view in Chromium shows labelled boxes. With STARDETR_DEMO_SCREENSHOT=FILE the
// picture is kept (`make demo-screenshot` writes the README's docs/demo-live.png).
func TestDemoLiveView(t *testing.T) {
	model := demoModel(t)
	bin := buildStardetr(t)
	dir := t.TempDir()
	const frames = 100
	gt := demoClip(t, dir, frames)
	mqttPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	cfgPath := demoConfig(t, dir, model, mqttPort, httpPort)
	d := startDaemon(t, bin, cfgPath)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	testenv.WaitFor(t, 60*time.Second, "the daemon's /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	sub := testenv.Subscribe(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mqttPort), "stardetr/demo/#", nil)

	names := map[string]bool{"red_disc": true, "blue_disc": true, "red_box": true, "blue_box": true}
	// Tracked detections and whether each lies on a ground-truth shape of its class (IoU >= 0.5,
	// in its clip frame or one either side: frame numbers count every frame read, from 1, across loops).
	tracked, onShape := 0, 0
	seen := 0
	var zoneCount bool
	var newEvent string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("so far: %d tracked detections (%d on a shape), first new event %q, a zone count above 0: %v",
				tracked, onShape, newEvent, zoneCount)
		}
	})
	sub.WaitFor(t, 90*time.Second, "40 tracked detections, a new event and a zone count above 0", func(ms []testenv.Received) bool {
		for _, m := range ms[seen:] {
			switch {
			case m.Topic == "stardetr/demo/demo/detections":
				var msg demoDetections
				if err := json.Unmarshal(m.Payload, &msg); err != nil {
					t.Fatalf("%s: %v", m.Topic, err)
				}
				for _, x := range msg.Detections {
					if !names[x.Label] {
						t.Fatalf("detection label %q is not one of the demo model's classes", x.Label)
					}
					if x.TrackID == nil {
						continue
					}
					tracked++
					f := (msg.Frame-1)%frames + 1
					hit := false
					for _, g := range append(append(gt[f-1], gt[f]...), gt[f+1]...) {
						hit = hit || (g.class == x.ClassID && iou(x.Box, [4]float64{g.x1, g.y1, g.x2, g.y2}) >= 0.5)
					}
					if hit {
						onShape++
					}
				}
			case m.Topic == "stardetr/demo/demo/events":
				var ev struct {
					Type  string `json:"type"`
					Label string `json:"label"`
				}
				if err := json.Unmarshal(m.Payload, &ev); err != nil {
					t.Fatalf("%s: %v", m.Topic, err)
				}
				if ev.Type == "new" && newEvent == "" {
					newEvent = ev.Label
				}
			case strings.HasPrefix(m.Topic, "stardetr/demo/demo/right_half/"):
				if n, err := strconv.Atoi(string(m.Payload)); err == nil && n > 0 {
					zoneCount = true
				}
			}
		}
		seen = len(ms)
		return tracked >= 40 && newEvent != "" && zoneCount
	})
	share := float64(onShape) / float64(tracked)
	t.Logf("demo: %d of %d tracked detections on a ground-truth shape of their class (%.2f); first new event: %s",
		onShape, tracked, share, newEvent)
	if share < 0.9 { // measured 1.00 (41 of 41) with the committed model
		t.Errorf("only %.2f of the tracked detections lie on a shape of their class (IoU >= 0.5); want >= 0.9", share)
	}

	// The live view: labelled boxes around the shapes (green edges of a box-sized run at least twice:
	// top and bottom of one box, or two boxes).
	var runs int
	wait := 3 * time.Second
	testenv.WaitFor(t, 60*time.Second, "a screenshot of the live view with a detection box", func() bool {
		// Each try waits twice as long for the stream's first frame as the one before (3 s, 6 s,
		// 12 s, then 20 s): on a loaded machine the first frame may take longer than 3 s to arrive.
		img := testenv.ScreenshotAfter(t, base+"/", wait)
		wait = min(2*wait, 20*time.Second)
		r, _ := testenv.DetectionBoxes(img, 12)
		runs = len(r)
		if runs < 2 {
			return false
		}
		if out := os.Getenv("STARDETR_DEMO_SCREENSHOT"); out != "" {
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := png.Encode(f, img); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot written to %s", out)
		}
		return true
	})
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("demo daemon stop: %v", err)
	}
}

// demoTrackFloor is the IDF1 that TestDemoTracks asserts of the committed demo model in either
// detect mode: measured 0.950 (MOTA 0.903) on 2026-12-07, 2-core AMD EPYC (README, "The demo
// model"); the margin is for frames a loaded machine drops.
const demoTrackFloor = 0.85

// The demo through the whole daemon, as a user measures a tracker: `stardetr run` with the demo
// model, tracking and the zone of configs/demo.yaml, publishing to mosquitto; the tracks it
// publishes for the first pass of the synthetic clip are scored against the clip's ground truth
// (gt.txt) by py-motmetrics (IDF1, MOTA, matching at IoU ≥ 0.5 within a class) on the frames it
// published, once with the model on every frame and once motion-gated, and events arrive for
// the shapes that cross the zone.
func TestDemoTracks(t *testing.T) {
	model := demoModel(t)
	bin := buildStardetr(t)
	clipDir := t.TempDir()
	const frames = 100
	gt := demoClip(t, clipDir, frames)
	broker := testenv.StartMosquitto(t, "")
	for _, mode := range []string{"always", "motion"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(filepath.Join(clipDir, "clip.mp4"), filepath.Join(dir, "clip.mp4")); err != nil {
				t.Fatal(err)
			}
			cfg := demoConfig(t, dir, model, broker.Port, testenv.FreePort(t),
				"device_id: demo", "device_id: "+mode,
				"mode: motion", "mode: "+mode,
				"      interval: 1s", "      interval: 0s", // every frame's detections, not one message a second
				"  embedded:\n    enabled: true", "  embedded:\n    enabled: false")
			sub := testenv.Subscribe(t, broker.URL("mqtt"), "stardetr/"+mode+"/demo/#", nil)
			d := startDaemon(t, bin, cfg)
			// The first pass of the looping clip is over once a frame of the second one is published.
			decode := func(m testenv.Received) (demoDetections, bool) {
				var msg demoDetections
				if m.Topic != "stardetr/"+mode+"/demo/detections" {
					return msg, false
				}
				if err := json.Unmarshal(m.Payload, &msg); err != nil {
					t.Fatalf("%s: %v", m.Topic, err)
				}
				return msg, true
			}
			msgs := sub.WaitFor(t, 120*time.Second, "the detections of the clip's first pass", func(ms []testenv.Received) bool {
				for _, m := range ms {
					if msg, ok := decode(m); ok && msg.Frame > frames {
						return true
					}
				}
				return false
			})
			if err := d.stop(20 * time.Second); err != nil {
				t.Errorf("daemon stop: %v", err)
			}
			var boxes, shiftedGT []testenv.MOTBox // shiftedGT: each frame's tracks against the next frame's ground truth
			published, newEvents := 0, 0
			for _, m := range msgs {
				if strings.HasSuffix(m.Topic, "/events") && strings.Contains(string(m.Payload), `"type":"new"`) {
					newEvents++
				}
				msg, ok := decode(m)
				if !ok || msg.Frame > frames {
					continue
				}
				published++
				for _, g := range gt[msg.Frame] {
					boxes = append(boxes, g.mot(msg.Frame))
				}
				for _, g := range gt[msg.Frame+1] {
					shiftedGT = append(shiftedGT, g.mot(msg.Frame))
				}
				for _, x := range msg.Detections {
					if x.TrackID != nil {
						h := testenv.MOTBox{Frame: msg.Frame, ID: *x.TrackID, Class: x.ClassID,
							X1: x.Box[0], Y1: x.Box[1], X2: x.Box[2], Y2: x.Box[3]}
						boxes = append(boxes, h)
						shiftedGT = append(shiftedGT, h)
					}
				}
			}
			r := testenv.MOTMetrics(t, boxes)
			// The daemon's frame numbers are the clip's: the tracks lie on their own frame's shapes
			// (moving ~6 px a frame) better than on the next frame's.
			if next := testenv.MOTMetrics(t, shiftedGT); next["idtp"] >= r["idtp"] {
				t.Errorf("tracks match the next frame's ground truth as well as their own (IDTP %.0f vs %.0f): frame numbers off", next["idtp"], r["idtp"])
			}
			t.Logf("detect mode %s: %d of %d frames published; GT %.0f, tracked boxes %.0f, FN %.0f, FP %.0f, IDSW %.0f: IDF1 %.3f MOTA %.3f; %d new events",
				mode, published, frames, r["num_objects"], r["num_predictions"], r["num_misses"], r["num_false_positives"],
				r["num_switches"], r["idf1"], r["mota"], newEvents)
			if published < frames/2 {
				t.Errorf("only %d of the clip's %d frames were published", published, frames)
			}
			if r["idf1"] < demoTrackFloor {
				t.Errorf("IDF1 %.3f below the demo model's floor %.2f", r["idf1"], demoTrackFloor)
			}
			if newEvents == 0 {
				t.Errorf("no new event for the clip's six shapes")
			}
		})
	}
}

// demoMotionIDF1Gap is how much lower motion mode's IDF1 may be than always mode's on the still
// demo clip (issue 21's bound): measured equal, 0.942 both (README, "Detect only when something
// moves"), and equal on the still clips of seeds 0-9.
const demoMotionIDF1Gap = 0.02

// With the trained demo model on a still picture that shapes cross three times in a minute
// (model.data.synth --video --still: 80% of the frames still), motion mode tracks the shapes as
// always mode does — IDF1 within demoMotionIDF1Gap over every frame of the clip (frames it
// skipped count as misses), the same new and end events per shape — running the model on a
// fraction of the frames. On the fake clock every frame reaches the pipeline in both modes, so
// the two runs decide on the same frames and the comparison does not depend on the machine.
func TestDemoMotionTracksAsAlways(t *testing.T) {
	modelPath := demoModel(t)
	dir := t.TempDir()
	const frames = 600
	gt := demoClip(t, dir, frames, "--still")
	// The model and tracker settings of configs/demo.yaml as shipped (conf, max_det, threads;
	// track.high, track.low), the libraries of this checkout.
	shipped, err := daemon.LoadConfig(filepath.Join(testenv.RepoRoot(t), "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := shipped.Model
	cfg.Path, cfg.ONNXRuntime, cfg.Plugin = modelPath, testenv.ONNXRuntime(t), testenv.Plugin(t)
	det, err := model.Open(context.Background(), cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	tc := shipped.Cameras[0].Track
	if !tc.Enabled {
		t.Fatal("configs/demo.yaml changed shape: its camera does not track")
	}
	sm := sceneModel{det: det.DefaultInput(), labels: det.Info().Names, track: tc}
	var truth []testenv.MOTBox
	for f := 1; f <= frames; f++ {
		for _, g := range gt[f] {
			truth = append(truth, g.mot(f))
		}
	}
	runs := map[string]sceneRun{}
	scores := map[string]map[string]float64{}
	for _, mode := range []string{pipeline.DetectAlways, pipeline.DetectMotion} {
		r := runScene(t, filepath.Join(dir, "clip.mp4"), mode, sm)
		m := testenv.MOTMetrics(t, append(slices.Clone(truth), r.tracks...))
		runs[mode], scores[mode] = r, m
		t.Logf("%s: %d model runs of %d frames (%d skipped); GT %.0f, tracked %.0f, FN %.0f, FP %.0f, IDSW %.0f: IDF1 %.3f MOTA %.3f; events %v",
			mode, r.runs, r.frames, r.skipped, m["num_objects"], m["num_predictions"], m["num_misses"],
			m["num_false_positives"], m["num_switches"], m["idf1"], m["mota"], r.events)
	}
	always, moving := runs[pipeline.DetectAlways], runs[pipeline.DetectMotion]
	if always.frames != frames || moving.frames != frames || always.runs != frames {
		t.Fatalf("frames %d and %d, always ran the model %d times: want %d each", always.frames, moving.frames, always.runs, frames)
	}
	if a, m := scores[pipeline.DetectAlways]["idf1"], scores[pipeline.DetectMotion]["idf1"]; a < demoTrackFloor || m < a-demoMotionIDF1Gap {
		t.Errorf("IDF1 always %.3f, motion %.3f: want always >= %.2f and motion within %.2f of it", a, m, demoTrackFloor, demoMotionIDF1Gap)
	}
	for _, label := range det.Info().Names {
		if a, m := newEnd(always.events[label]), newEnd(moving.events[label]); a != "new,end" || m != a {
			t.Errorf("%s: always %q, motion %q; want new,end in both", label, a, m)
		}
	}
	if moving.runs*3 > always.runs {
		t.Errorf("motion mode ran the model %d times of %d frames: want under a third", moving.runs, frames)
	}
}
