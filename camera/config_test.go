package camera_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/testenv"
)

func TestValidateAccepts(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*camera.Config)
		kind camera.Kind
	}{
		{"v4l2 with format", func(c *camera.Config) {
			c.URL, c.Width, c.Height, c.FPS, c.FourCC = "/dev/video0", 1280, 720, 30, "MJPG"
		}, camera.KindV4L2},
		{"v4l2 by-id link", func(c *camera.Config) { c.URL = "/dev/v4l/by-id/usb-046d_HD_Webcam-video-index0" }, camera.KindV4L2},
		{"rtsp with credentials", func(c *camera.Config) { c.URL = "rtsp://user:p%40ss@10.0.0.5:554/stream1" }, camera.KindNetwork},
		{"rtsps", func(c *camera.Config) { c.URL = "rtsps://cam.local/live" }, camera.KindNetwork},
		{"http mjpeg", func(c *camera.Config) { c.URL = "http://127.0.0.1:8080/video.mjpg" }, camera.KindNetwork},
		{"https", func(c *camera.Config) { c.URL = "https://cam.example/stream" }, camera.KindNetwork},
		{"jetson csi", func(c *camera.Config) {
			c.URL = "gst:nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
		}, camera.KindGStreamer},
		{"file realtime with fps", func(c *camera.Config) { c.URL, c.FPS = testClip, 5 }, camera.KindFile},
		{"file fast no loop", func(c *camera.Config) { c.URL, c.Pace, c.Loop = testClip, camera.PaceFast, false }, camera.KindFile},
		{"explicit timeouts", func(c *camera.Config) {
			c.URL, c.StallTimeout, c.OpenTimeout = "rtsp://cam/x", 2*time.Second, 3*time.Second
		}, camera.KindNetwork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := camera.DefaultConfig()
			c.Name = "front-door_1"
			tc.mod(&c)
			if err := confcheck.In("cameras[0]", c.Validate()); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if c.Kind() != tc.kind {
				t.Errorf("kind %q, want %q", c.Kind(), tc.kind)
			}
		})
	}
}

// Defaults come from DefaultConfig only: Validate reports a zero value, and changes nothing.
func TestValidateFillsNothing(t *testing.T) {
	c := camera.Config{Name: "a", URL: "rtsp://cam/x"}
	before := c
	testenv.WantError(t, confcheck.In("cameras[0]", c.Validate()), "cameras[0].stall_timeout: 0s", "cameras[0].open_timeout: 0s", "cameras[0].pace")
	if c != before {
		t.Errorf("Validate changed the config: %+v", c)
	}
	d := camera.DefaultConfig()
	if !d.Loop || d.Pace != camera.PaceRealtime || d.StallTimeout != 5*time.Second || d.OpenTimeout != 10*time.Second {
		t.Errorf("DefaultConfig = %+v", d)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*camera.Config)
		want string // the whole message must start with the key path, then contain this
	}{
		{"no name", func(c *camera.Config) { c.Name = "" }, "cameras[1].name: is empty"},
		{"name with slash", func(c *camera.Config) { c.Name = "front/door" }, `cameras[1].name: "front/door": use letters`},
		{"empty url", func(c *camera.Config) { c.URL = "" }, "cameras[1].url: is empty: set it to /dev/videoN, rtsp://"},
		{"unknown scheme", func(c *camera.Config) { c.URL = "rtmp://host/live" }, `cameras[1].url: "rtmp://host/live": unknown scheme "rtmp": use /dev/videoN`},
		{"malformed url", func(c *camera.Config) { c.URL = "rtsp://user:pa ss@10.0.0.5:554/x" }, "cameras[1].url: \"rtsp://***@10.0.0.5:554/x\": malformed URL"},
		{"bad percent escape", func(c *camera.Config) { c.URL = "http://cam/%zz" }, `cameras[1].url: "http://cam/%zz": malformed URL`},
		{"no host", func(c *camera.Config) { c.URL = "rtsp:///stream" }, "cameras[1].url: \"rtsp:///stream\": has no host"},
		{"bad port", func(c *camera.Config) { c.URL = "rtsp://cam:70000/x" }, `cameras[1].url: "rtsp://cam:70000/x": port "70000" must be 1..65535`},
		{"missing file", func(c *camera.Config) { c.URL = "testdata/no-such-clip.mp4" }, `cameras[1].url: "testdata/no-such-clip.mp4": video file not found (no such file or directory)`},
		{"directory", func(c *camera.Config) { c.URL = "testdata" }, `cameras[1].url: "testdata": is a directory`},
		{"bare /dev/", func(c *camera.Config) { c.URL = "/dev/" }, `cameras[1].url: "/dev/": names no device`},
		{"empty gst", func(c *camera.Config) { c.URL = "gst: " }, "cameras[1].url: \"gst: \": the pipeline after gst: is empty"},
		{"gst without appsink", func(c *camera.Config) { c.URL = "gst:videotestsrc ! autovideosink" }, "must end in appsink"},
		{"negative fps", func(c *camera.Config) { c.URL, c.FPS = "/dev/video0", -1 }, "cameras[1].fps: -1 is out of range: 0 to 1000"},
		{"NaN fps", func(c *camera.Config) { c.URL, c.FPS = "/dev/video0", math.NaN() }, "cameras[1].fps: NaN is out of range: 0 to 1000"},
		{"fps slower than the stall timeout", func(c *camera.Config) { c.URL, c.FPS = "/dev/video0", 0.1 },
			"cameras[1].fps: 0.1 means a frame every 10s, not less than stall_timeout 5s: raise stall_timeout"},
		{"fps on a stream", func(c *camera.Config) { c.URL, c.FPS = "rtsp://cam/x", 10 }, "cameras[1].fps: applies to V4L2 devices and files only"},
		{"negative width", func(c *camera.Config) { c.URL, c.Width = "/dev/video0", -640 }, "cameras[1].width: -640: must be >= 0"},
		{"negative height", func(c *camera.Config) { c.URL, c.Height = "/dev/video0", -1 }, "cameras[1].height: -1: must be >= 0"},
		{"width on a file", func(c *camera.Config) { c.URL, c.Width = testClip, 640 }, "cameras[1].width: applies to V4L2 devices (/dev/video*) only"},
		{"fourcc on rtsp", func(c *camera.Config) { c.URL, c.FourCC = "rtsp://cam/x", "MJPG" }, "cameras[1].fourcc: applies to V4L2 devices"},
		{"fourcc too long", func(c *camera.Config) { c.URL, c.FourCC = "/dev/video0", "MJPEG" }, `cameras[1].fourcc: "MJPEG": must be 4 letters or digits`},
		{"bad pace", func(c *camera.Config) { c.URL, c.Pace = testClip, "slow" }, `cameras[1].pace: "slow": must be "realtime" or "fast"`},
		{"negative stall", func(c *camera.Config) { c.URL, c.StallTimeout = "rtsp://cam/x", -time.Second }, "cameras[1].stall_timeout: -1s is out of range: 100ms to 1h"},
		{"tiny open timeout", func(c *camera.Config) { c.URL, c.OpenTimeout = "rtsp://cam/x", time.Millisecond }, "cameras[1].open_timeout: 1ms is out of range: 100ms to 1h"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := camera.DefaultConfig()
			c.Name, c.URL = "cam", "rtsp://cam/x"
			tc.mod(&c)
			err := confcheck.In("cameras[1]", c.Validate())
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			if !strings.HasPrefix(err.Error(), "cameras[1].") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateHidesPasswords(t *testing.T) {
	c := camera.Config{Name: "a", URL: "rtsp://admin:secret@cam:99999/x"}
	err := confcheck.In("cameras[0]", c.Validate())
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Validate = %v: want an error without the password", err)
	}
}

func TestNewSourceRejectsInvalidConfig(t *testing.T) {
	_, err := camera.NewSource(camera.Config{Name: "x", URL: "ftp://cam/x"}, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown scheme "ftp"`) {
		t.Fatalf("NewSource = %v", err)
	}
}

func TestV4L2Props(t *testing.T) {
	c := camera.Config{Width: 1280, Height: 720, FPS: 30, FourCC: "MJPG"}
	got := camera.V4L2Props(c)
	// 'M'|'J'<<8|'P'<<16|'G'<<24, as OpenCV's VideoWriter::fourcc('M','J','P','G') computes it.
	const mjpg = 0x47504A4D
	want := []camera.Prop{
		{ID: gocv.VideoCaptureFOURCC, Value: mjpg},
		{ID: gocv.VideoCaptureFrameWidth, Value: 1280},
		{ID: gocv.VideoCaptureFrameHeight, Value: 720},
		{ID: gocv.VideoCaptureFPS, Value: 30},
	}
	if len(got) != len(want) {
		t.Fatalf("V4L2Props = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prop %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if v := camera.FourCC("YUYV"); v != 0x56595559 {
		t.Errorf("FourCC(YUYV) = %#x", uint32(v))
	}
	var vc gocv.VideoCapture
	if v := camera.FourCC("H264"); v != vc.ToCodec("H264") {
		t.Errorf("FourCC(H264) = %v, gocv's ToCodec says %v", v, vc.ToCodec("H264"))
	}
	if p := camera.V4L2Props(camera.Config{Width: 640}); len(p) != 1 || p[0].ID != gocv.VideoCaptureFrameWidth {
		t.Errorf("only the set options become properties, got %v", p)
	}
	if p := camera.V4L2Props(camera.Config{}); len(p) != 0 {
		t.Errorf("an unset V4L2 config sets no properties, got %v", p)
	}
}
