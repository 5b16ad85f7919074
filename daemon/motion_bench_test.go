package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/motion"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/track"
)

// stillScene is the measured scene of motion mode: a still picture (a grid and two boxes,
// sensor-like noise that x264 mostly keeps) where three coloured objects cross the frame one
// after the other, each for 4 s at 10 s, 50 s and 90 s: still 90% of a 2-minute clip.
type sceneObject struct {
	colour       string // ffmpeg colour; the object's label is its dominant channel
	w, h, y      float64
	start, speed float64 // s; frame widths per second, negative: right to left
}

var stillSceneObjects = []sceneObject{
	{"0xd02020", 0.094, 0.333, 0.58, 10, 0.273},  // red, like a person, left to right
	{"0x20b040", 0.188, 0.167, 0.72, 50, -0.297}, // green, like a car, right to left
	{"0x3050e0", 0.078, 0.278, 0.53, 90, 0.270},  // blue, left to right
}

// stillSceneClip writes the scene as an H.264 clip of w×h at 10 fps and seconds long, in dir.
func stillSceneClip(t testing.TB, dir string, w, h, seconds int) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("still-scene-%dx%d-%ds.mp4", w, h, seconds))
	args := []string{"-v", "error", "-y", "-f", "lavfi", "-i", fmt.Sprintf("color=c=0x5a6470:s=%dx%d:r=10:d=%d", w, h, seconds)}
	px := func(f float64, of int) int { return int(f * float64(of)) }
	graph := fmt.Sprintf("[0]drawgrid=w=%d:h=%d:t=2:c=0x303840,drawbox=x=%d:y=%d:w=%d:h=%d:c=0x806040:t=fill,drawbox=x=%d:y=%d:w=%d:h=%d:c=0x405060:t=fill,noise=alls=4:allf=t[s0]",
		w/8, h/8, px(0.08, w), px(0.55, h), px(0.23, w), px(0.28, h), px(0.62, w), px(0.14, h), px(0.2, w), px(0.49, h))
	for i, o := range stillSceneObjects {
		ow, oh := px(o.w, w), px(o.h, h)
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("color=c=%s:s=%dx%d:r=10", o.colour, ow, oh))
		x0, v := float64(-ow), o.speed*float64(w)
		if o.speed < 0 {
			x0 = float64(w)
		}
		graph += fmt.Sprintf(";[s%d][%d]overlay=x='if(between(t,%g,%g),%g+(t-%g)*%g,-4000)':y=%d:eval=frame:shortest=1[s%d]",
			i, i+1, o.start, o.start+4, x0, o.start, v, px(o.y, h), i+1)
	}
	args = append(args, "-filter_complex", graph, "-map", fmt.Sprintf("[s%d]", len(stillSceneObjects)),
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "50", "-pix_fmt", "yuv420p", p)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg (installed by scripts/setup): %v\n%s", err, out)
	}
	return p
}

// colourDetector stands in for a trained model on the still scene: it reports the bounding box
// of each colour's strongly saturated pixels, labelled by the dominant channel, so detections
// follow what the clip shows.
type colourDetector struct {
	mu  sync.Mutex
	box [3][4]int
	n   [3]int
}

var colourLabels = [3]string{"red", "green", "blue"}

func (d *colourDetector) Preprocess(m gocv.Mat) error {
	pix, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	w, h := m.Cols(), m.Rows()
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.box {
		d.box[c], d.n[c] = [4]int{w, h, -1, -1}, 0
	}
	for y := range h {
		row := pix[y*w*3 : (y+1)*w*3]
		for x := range w {
			b, g, r := int(row[3*x]), int(row[3*x+1]), int(row[3*x+2])
			hi, lo := max(r, g, b), min(r, g, b)
			if hi-lo < 100 {
				continue
			}
			c := 0
			if g == hi {
				c = 1
			} else if b == hi {
				c = 2
			}
			bx := &d.box[c]
			bx[0], bx[1], bx[2], bx[3] = min(bx[0], x), min(bx[1], y), max(bx[2], x), max(bx[3], y)
			d.n[c]++
		}
	}
	return nil
}

func (d *colourDetector) Run() error { return nil }

func (d *colourDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c, b := range d.box {
		// A sliver at the frame's edge is not an object yet.
		if d.n[c] < w*h/2000 || b[2]-b[0] < w/100 {
			continue
		}
		out = append(out, model.Detection{ClassID: c, Label: colourLabels[c], Score: 0.9,
			Box: [4]float32{float32(b[0]), float32(b[1]), float32(b[2] + 1), float32(b[3] + 1)}})
	}
	return out
}

// fakeClockFile plays a video file into the pipeline on a fake clock: frame i carries the
// capture time t0 + i·100 ms, and the next frame comes once the pipeline has processed or
// skipped the last one. So each mode decides on exactly the frames a camera would deliver,
// without a wall-clock wait and with no frame replaced in the hand-off.
type fakeClockFile struct {
	path    string
	settled func(frames int) bool
	mu      sync.Mutex
	frames  int
	err     error
}

var fakeT0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

func (s *fakeClockFile) Run(ctx context.Context, sink func(*camera.Frame)) error {
	err := s.run(ctx, sink)
	s.mu.Lock()
	s.err = err
	if err == nil {
		s.err = io.EOF
	}
	s.mu.Unlock()
	return err
}

func (s *fakeClockFile) run(ctx context.Context, sink func(*camera.Frame)) error {
	vc, err := gocv.VideoCaptureFile(s.path)
	if err != nil {
		return err
	}
	defer vc.Close()
	pool := camera.NewFramePool(camera.FramePoolSize, "scene")
	defer pool.Close()
	for i := 0; ctx.Err() == nil; i++ {
		f := pool.Get()
		if f == nil {
			return fmt.Errorf("frame %d: the pipeline holds every pooled frame", i)
		}
		if !vc.Read(&f.Mat) || f.Mat.Empty() {
			f.Release()
			return nil
		}
		f.Seq, f.Time = uint64(i+1), fakeT0.Add(time.Duration(i)*100*time.Millisecond)
		sink(f)
		if !testenv.Poll(30*time.Second, time.Millisecond, func() bool { return ctx.Err() != nil || s.settled(i+1) }) {
			return fmt.Errorf("frame %d: neither processed nor skipped within 30 s", i)
		}
		s.mu.Lock()
		s.frames = i + 1
		s.mu.Unlock()
	}
	return nil
}

func (s *fakeClockFile) State() camera.State { return camera.State{Phase: camera.PhaseStreaming} }

// sceneEvents records, per object label, the event types in order, and the tracked boxes of
// every published frame.
type sceneEvents struct {
	mu     sync.Mutex
	events map[string][]string
	tracks []testenv.MOTBox
}

func (r *sceneEvents) Publish(m *pipeline.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range m.Detections {
		if d.TrackID != 0 {
			r.tracks = append(r.tracks, testenv.MOTBox{Frame: int(m.Frame), ID: int(d.TrackID), Class: d.ClassID,
				X1: float64(d.Box[0]), Y1: float64(d.Box[1]), X2: float64(d.Box[2]), Y2: float64(d.Box[3])})
		}
	}
	return nil
}

func (r *sceneEvents) PublishTracked(t *pipeline.Tracked) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range t.Events {
		r.events[e.Label] = append(r.events[e.Label], e.Type)
	}
	return nil
}

// sceneRun is one mode's pass over a clip: its events per object, the tracked boxes of each
// frame and the model's runs.
type sceneRun struct {
	events    map[string][]string
	tracks    []testenv.MOTBox
	runs      int
	skipped   uint64
	frames    int
	wallClock time.Duration
}

// sceneModel is what runs on the scene's frames: a detector, its labels and the camera's tracker.
type sceneModel struct {
	det    pipeline.FrameSlot
	labels []string
	track  track.Config
}

// colourScene is the colour detector with the tracker's defaults (events.update_interval 10 s).
func colourScene() sceneModel {
	tc := track.DefaultConfig()
	tc.Enabled, tc.UpdateInterval = true, 10*time.Second
	return sceneModel{det: &colourDetector{}, labels: colourLabels[:], track: tc}
}

// runScene plays the clip through the pipeline with the scene's model and tracker in the given
// detect mode (keyframe_interval 10 s, motion defaults) on the fake clock; every processed frame
// is published.
func runScene(t testing.TB, clip, mode string, sm sceneModel) sceneRun {
	t.Helper()
	rec := &sceneEvents{events: map[string][]string{}}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(sm.det)}, rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	src := &fakeClockFile{path: clip}
	src.settled = func(n int) bool {
		c := p.Stats().Cameras[0]
		return c.Processed+c.Skipped >= uint64(n)
	}
	cam := pipeline.Camera{Name: "scene", Key: mode, Source: src, Policy: pipeline.Policy{Mode: pipeline.PolicyEvery},
		Scene:  track.NewScene(sm.track, nil, sm.labels),
		Detect: pipeline.Detect{Mode: mode, KeyframeInterval: 10 * time.Second}, Motion: motion.DefaultConfig()}
	if err := p.Update([]pipeline.Camera{cam}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	testenv.WaitFor(t, 10*time.Minute, "the clip to play through", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.err != nil
	})
	wall := time.Since(start)
	if src.err != io.EOF {
		t.Fatal(src.err)
	}
	st := p.Stats().Cameras[0]
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return sceneRun{events: rec.events, tracks: rec.tracks, runs: int(st.Processed), skipped: st.Skipped, frames: src.frames, wallClock: wall}
}

// newEnd keeps an object's new and end events, the ones that must not depend on the mode.
func newEnd(types []string) string {
	var out []string
	for _, ty := range types {
		if ty != detection.EventUpdate {
			out = append(out, ty)
		}
	}
	return strings.Join(out, ",")
}

// Motion mode finds every object of the still scene that always mode finds, with the same new
// and end events, running the model on a fraction of the frames. (Counts, not timings.)
func TestMotionModeSameEventsAsAlways(t *testing.T) {
	clip := stillSceneClip(t, t.TempDir(), 640, 360, 120)
	always := runScene(t, clip, pipeline.DetectAlways, colourScene())
	moving := runScene(t, clip, pipeline.DetectMotion, colourScene())
	t.Logf("always: %d runs of %d frames, events %v", always.runs, always.frames, always.events)
	t.Logf("motion: %d runs (%d skipped), events %v", moving.runs, moving.skipped, moving.events)
	if always.frames != 1200 || moving.frames != 1200 || always.runs != 1200 {
		t.Fatalf("frames %d and %d, always ran %d times: want 1200 each", always.frames, moving.frames, always.runs)
	}
	for _, label := range colourLabels {
		if a, m := newEnd(always.events[label]), newEnd(moving.events[label]); a != "new,end" || m != a {
			t.Errorf("%s: always %q, motion %q; want new,end in both", label, a, m)
		}
	}
	if len(always.events) != 3 || len(moving.events) != 3 {
		t.Errorf("objects with events: always %d, motion %d, want 3", len(always.events), len(moving.events))
	}
	if moving.runs*5 > always.runs || moving.runs+int(moving.skipped) != 1200 {
		t.Errorf("motion mode ran the model %d times (%d skipped) of 1200 frames: want under a fifth", moving.runs, moving.skipped)
	}
}

// cpuSeconds reads a process's user+system CPU time from /proc/<pid>/stat (fields 14 and 15,
// in USER_HZ ticks, 100 a second on Linux).
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from the closing parenthesis.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// daemonRun is one mode's run of the real daemon over the clip.
type daemonRun struct {
	cpu, cpuStart, wall float64 // CPU s while the clip played, CPU s of start-up, wall s of the clip
	processed, skipped  float64
}

// runDaemonMode plays the clip once, in real time, through `stardetr run` in the given mode and
// measures the process's CPU seconds from /proc/<pid>/stat between the camera's first frame
// and the end of the file.
func runDaemonMode(b *testing.B, bin, dir, clip, modelPath, mode string, threads int, brokerURL string) daemonRun {
	b.Helper()
	port := testenv.FreePort(b)
	cfg := filepath.Join(dir, mode+".yaml")
	body := fmt.Sprintf(`state_dir: %s/state-%s
log_level: warn
model: {path: %s, threads: %d}
cameras:
  - name: scene
    url: %s
    loop: false
    pace: realtime
    detect: {mode: %s, keyframe_interval: 10s}
mqtt: {brokers: [%s]}
http: {listen: "127.0.0.1:%d"}
`, dir, mode, modelPath, threads, clip, mode, brokerURL, port)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	d := startDaemon(b, bin, cfg)
	pid := d.cmd.Process.Pid
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	state := func() string {
		resp, err := http.Get(base + "/api/cameras")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var list []struct{ State string }
		if json.NewDecoder(resp.Body).Decode(&list) != nil || len(list) != 1 {
			return ""
		}
		return list[0].State
	}
	var r daemonRun
	testenv.WaitFor(b, 2*time.Minute, "the camera to stream", func() bool { return state() == "streaming" })
	r.cpuStart = cpuSeconds(b, pid)
	t0 := time.Now()
	testenv.WaitFor(b, 10*time.Minute, "the clip to end", func() bool { return state() == "stopped" })
	r.wall = time.Since(t0).Seconds()
	r.cpu = cpuSeconds(b, pid) - r.cpuStart
	_, m := getURL(b, base+"/metrics")
	r.processed = metricB(b, m, `stardetr_frames_processed_total{camera="scene"}`)
	r.skipped = metricB(b, m, `stardetr_frames_skipped_total{camera="scene",reason="no_motion"}`)
	if err := d.stop(10 * time.Second); err != nil {
		b.Fatal(err)
	}
	return r
}

func metricB(b *testing.B, body []byte, name string) float64 {
	b.Helper()
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	b.Fatalf("metric %s missing from /metrics", name)
	return 0
}

// BenchmarkMotionVsAlways measures motion mode against always mode on the 2-minute still
// scene (1280×720, 10 fps, objects in view 12 s of 120), side by side in one run:
//
//   - the daemon's CPU seconds (/proc/<pid>/stat) while the clip plays in real time through
//     `stardetr run` with the seed at 160 (STARDETR_MOTION_MODEL, a file under
//     $STARDETR_MODELS; model.threads 1, so that no spinning worker thread inflates always
//     mode), tracking off: the stand-in models' random weights report boxes everywhere, and
//     tracks of them would keep motion mode busy as no real scene does;
//   - the events per object and the model's runs of the pipeline with the tracker, a detector
//     that sees the coloured objects, and the motion gate, on the fake clock (every frame).
//
// It takes about 5 minutes: run it alone, `go test -run '^$' -bench MotionVsAlways ./daemon/`.
func BenchmarkMotionVsAlways(b *testing.B) {
	modelName := os.Getenv("STARDETR_MOTION_MODEL")
	if modelName == "" {
		modelName = "seed-160.onnx"
	}
	modelPath := testenv.Model(b, modelName)
	bin := buildStardetr(b)
	dir := b.TempDir()
	clip := stillSceneClip(b, dir, 1280, 720, 120)
	broker := testenv.StartMosquitto(b, "")
	for b.Loop() {
		always := runScene(b, clip, pipeline.DetectAlways, colourScene())
		moving := runScene(b, clip, pipeline.DetectMotion, colourScene())
		da := runDaemonMode(b, bin, dir, clip, modelPath, pipeline.DetectAlways, 1, broker.URL("mqtt"))
		dm := runDaemonMode(b, bin, dir, clip, modelPath, pipeline.DetectMotion, 1, broker.URL("mqtt"))
		b.Logf("still scene, 1280x720, 10 fps, 120 s; model %s, 1 thread", modelName)
		b.Logf("%-8s %12s %10s %12s %12s %14s | %14s %s", "mode", "daemon CPU s", "clip s", "model runs", "skipped", "start-up CPU s", "scene runs", "scene events (new/update/end per object)")
		for _, r := range []struct {
			mode string
			d    daemonRun
			s    sceneRun
		}{{"always", da, always}, {"motion", dm, moving}} {
			b.Logf("%-8s %12.1f %10.1f %12.0f %12.0f %14.1f | %14d %v", r.mode, r.d.cpu, r.d.wall, r.d.processed, r.d.skipped, r.d.cpuStart, r.s.runs, r.s.events)
		}
		b.Logf("daemon CPU always/motion: %.2fx; scene model runs always/motion: %.2fx", da.cpu/dm.cpu, float64(always.runs)/float64(moving.runs))
		b.ReportMetric(da.cpu, "always-cpu-s")
		b.ReportMetric(dm.cpu, "motion-cpu-s")
		b.ReportMetric(da.cpu/dm.cpu, "cpu-ratio")
		b.ReportMetric(float64(moving.runs)/float64(moving.frames), "motion-duty")
		for _, label := range colourLabels {
			if a, m := newEnd(always.events[label]), newEnd(moving.events[label]); a != "new,end" || m != a {
				b.Errorf("%s: always %q, motion %q; want new,end in both", label, a, m)
			}
		}
	}
}
