package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// hostHasInt8Dot reads this machine's /proc/cpuinfo the way an operator would.
func hostHasInt8Dot(t *testing.T) bool {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(info)) {
		if f == "avx512_vnni" || f == "avx_vnni" || f == "asimddp" {
			return true
		}
	}
	return false
}

// `stardetr check` and `stardetr bench` say whether the CPU has int8 dot-product instructions
// and, without them, that an INT8 model gains nothing.
func TestCheckAndBenchReportInt8Dot(t *testing.T) {
	bin := buildStardetr(t)
	want := "no (none of avx512_vnni, avx_vnni in /proc/cpuinfo): an INT8 model gains nothing on this CPU"
	if hostHasInt8Dot(t) {
		want = "yes ("
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	body := fmt.Sprintf("state_dir: %s/state\nmodel: {path: %s}\ncameras:\n  - {name: a, url: /dev/video0}\nhttp: {listen: \"\"}\n", dir, testenv.Model(t, "tiny.onnx"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cpu: int8 dot product: "+want) {
		t.Errorf("check: %v\n%s\nwant a line with %q", err, out, "cpu: int8 dot product: "+want)
	}
	out, err = exec.Command(bin, "bench", "--model", testenv.Model(t, "tiny.onnx"), "--threads", "1", "--runs", "1", "--profile-runs", "0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "int8 dot     "+want) {
		t.Errorf("bench: %v\n%s\nwant a line with %q", err, out, "int8 dot     "+want)
	}
}

// Each bad motion, detect or filter value is one problem of `stardetr check` naming its key
// and the accepted values; a filter for a label the model lacks is found once the model is
// loaded. The tiny model's classes are person and car.
func TestCheckRejectsBadMotionConfig(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name, camera string
		want         []string
	}{
		{"mask outside 0..1", "motion: {masks: [[[0, 0], [1.2, 0], [1, 1]]]}", []string{"cameras[0].motion.masks[0][1][0]: 1.2 is out of range: 0 to 1"}},
		{"mask of two points", "motion: {masks: [[[0, 0], [1, 1]]]}", []string{"cameras[0].motion.masks[0]: has 2 points: a mask needs at least 3"}},
		{"keyframe_interval 0", "detect: {mode: motion, keyframe_interval: 0s}", []string{"cameras[0].detect.keyframe_interval: 0s is out of range"}},
		{"keyframe_interval negative", "detect: {keyframe_interval: -5s}", []string{"cameras[0].detect.keyframe_interval: -5s is out of range"}},
		{"unknown mode", "detect: {mode: sometimes}", []string{`cameras[0].detect.mode: "sometimes" is not a mode`, `"always"`, `"motion"`}},
		{"filter for a label the model lacks", "objects: {filters: {unicorn: {min_score: 0.5}}}", []string{`cameras[0].objects.filters.unicorn: "unicorn" is not a class of the model (its classes: [person car])`}},
		{"filter out of range", "objects: {filters: {car: {max_area: 2}}}", []string{"cameras[0].objects.filters.car.max_area: 2 is out of range: 0 to 1"}},
		{"stationary iou", "track: {stationary: {iou: 0}}", []string{"cameras[0].track.stationary.iou: 0 is out of range"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.yaml")
			body := fmt.Sprintf("state_dir: %s/state\nmodel: {path: %s}\ncameras:\n  - name: a\n    url: /dev/video0\n    %s\nhttp: {listen: \"\"}\n",
				dir, testenv.Model(t, "tiny.onnx"), c.camera)
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("check: exit %v, want 1\n%s", err, out)
			}
			testenv.WantError(t, fmt.Errorf("%s", out), append(c.want, "has 1 problem(s)")...)
		})
	}
}

// stillClip writes a 5 s, 10 fps, 320×240 clip of one still picture (a grey frame with two
// boxes), for motion mode to have nothing to see.
func stillClip(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "still.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=320x240:r=10:d=5",
		"-vf", "drawbox=x=40:y=40:w=80:h=60:color=blue:t=fill,drawbox=x=200:y=120:w=60:h=90:color=yellow:t=fill",
		"-c:v", "libx264", "-pix_fmt", "yuv420p", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg (installed by scripts/setup): %v\n%s", err, out)
	}
	return p
}

type apiCamera struct {
	Name      string  `json:"name"`
	Mode      string  `json:"mode"`
	DetectFPS float64 `json:"detections_per_s"`
	Motion    bool    `json:"motion"`
	Skipped   uint64  `json:"frames_skipped"`
}

// A SIGHUP reload that changes cameras[].detect.mode restarts the camera in the new mode:
// always → motion (the still clip's frames are skipped, counted in /metrics) → always again.
func TestReloadChangesDetectMode(t *testing.T) {
	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	dir := t.TempDir()
	clip := stillClip(t)
	port := testenv.FreePort(t)
	cfg := filepath.Join(dir, "config.yaml")
	write := func(mode string) {
		body := fmt.Sprintf(`state_dir: %s/state
model: {path: %s, threads: 1}
cameras:
  - name: front
    url: %s
    detect: {mode: %s, keyframe_interval: 1h}
mqtt: {brokers: [%s]}
http: {listen: "127.0.0.1:%d"}
`, dir, testenv.Model(t, "tiny.onnx"), clip, mode, broker.URL("mqtt"), port)
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	front := func() apiCamera {
		resp, err := http.Get(base + "/api/cameras")
		if err != nil {
			return apiCamera{}
		}
		defer resp.Body.Close()
		var list []apiCamera
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list) != 1 {
			return apiCamera{}
		}
		return list[0]
	}
	write("always")
	d := startDaemon(t, bin, cfg)
	var c apiCamera
	testenv.WaitFor(t, 60*time.Second, "front detecting in mode always", func() bool {
		c = front()
		return c.Mode == "always" && c.DetectFPS > 0
	})
	if c.Skipped != 0 {
		t.Fatalf("always mode skipped %d frames", c.Skipped)
	}

	write("motion")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "front in mode motion skipping still frames", func() bool {
		c = front()
		return c.Mode == "motion" && c.Skipped >= 10
	})
	if c.Motion {
		t.Errorf("a still clip shows motion: %+v", c)
	}
	_, m := getURL(t, base+"/metrics")
	if v := metric(t, m, `stardetr_frames_skipped_total{camera="front",reason="no_motion"}`); v < 10 {
		t.Errorf("stardetr_frames_skipped_total %v, want ≥ 10", v)
	}
	if v := metric(t, m, `stardetr_motion_active{camera="front"}`); v != 0 {
		t.Errorf("stardetr_motion_active %v on a still clip, want 0", v)
	}

	write("always")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "front back in mode always, detecting", func() bool {
		c = front()
		return c.Mode == "always" && c.Skipped == 0 && c.DetectFPS > 0
	})
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
