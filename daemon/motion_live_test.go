package daemon

import (
	"encoding/json"
	"image"
	"net/http"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/pipeline"
)

func isMagenta(img image.Image, x, y int) bool {
	r, g, b := rgb(img, x, y)
	return r > 170 && b > 170 && g < 110
}

// headerHeight is the page's header, whose legend shows the motion colour: the streams are
// below it.
const headerHeight = 50

func countMagenta(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y + headerHeight; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if isMagenta(img, x, y) {
				n++
			}
		}
	}
	return n
}

// The live view of a camera in detect mode motion, in a real browser: with the page's motion
// toggle on (/?motion=1) the stream shows the moving box's motion box in magenta, with it off
// it shows none; /api/cameras reports the mode, detections per second and motion.
func TestLiveViewMotionToggle(t *testing.T) {
	r := startRig(t, true)
	cfg := r.cfg
	cfg.Cameras = append([]CameraConfig(nil), r.cfg.Cameras...)
	cfg.Cameras[0].Detect = pipeline.Detect{Mode: pipeline.DetectMotion, KeyframeInterval: 10 * time.Second}
	cams, err := buildCameras(cfg.Cameras, cfg.Events, r.labels, r.sink.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pipe.Update(cams); err != nil { // as a reload does: the camera restarts in motion mode
		t.Fatal(err)
	}
	base := serveLive(t, r, nil)
	var cam cameraHealth
	testenv.WaitFor(t, 30*time.Second, "/api/cameras to report motion with detections", func() bool {
		resp, err := http.Get(base + "/api/cameras")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []cameraHealth
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list) != 1 {
			t.Fatalf("/api/cameras: %v %v", list, err)
		}
		cam = list[0]
		return cam.Mode == pipeline.DetectMotion && cam.Motion && cam.DetectFPS > 0
	})
	// The box shows 8 s of every 10: take pictures until one shows motion.
	var shot image.Image
	found := testenv.Poll(40*time.Second, 100*time.Millisecond, func() bool {
		shot = screenshot(t, base+"/?motion=1")
		return countMagenta(shot) >= 20
	})
	if !found {
		t.Fatalf("no screenshot of /?motion=1 within 40 s shows a magenta motion box (last: %d magenta pixels)", countMagenta(shot))
	}
	// The motion boxes lie along the moving red box: the changed regions are its edges and the
	// place it just left (the background takes in what stays within a second), so they touch or
	// overlap its detection box.
	det, ok := detectionBox(shot)
	if ok {
		var mb image.Rectangle
		b := shot.Bounds()
		for y := b.Min.Y + headerHeight; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if isMagenta(shot, x, y) {
					mb = mb.Union(image.Rect(x, y, x+1, y+1))
				}
			}
		}
		if !det.Inset(-8).Overlaps(mb) {
			t.Errorf("motion boxes within %v are not next to the detection box %v", mb, det)
		}
	}
	for range 3 {
		if n := countMagenta(screenshot(t, base+"/")); n > 0 {
			t.Fatalf("the live view without the motion toggle shows %d magenta pixels", n)
		}
	}
}
