package camera_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stardetr/stardetr/camera"
)

// received is what a test sink keeps of each frame after releasing it.
type received struct {
	seq  uint64
	time time.Time
	w, h int
	data []byte
}

// collector is a sink that copies each frame and releases it at once.
type collector struct {
	mu     sync.Mutex
	frames []received
	max    int // keep at most this many copies (0 = all)
}

func (c *collector) sink(f *camera.Frame) {
	defer f.Release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && len(c.frames) >= c.max {
		return
	}
	b, _ := f.Mat.DataPtrUint8()
	c.frames = append(c.frames, received{f.Seq, f.Time, f.Mat.Cols(), f.Mat.Rows(), append([]byte(nil), b...)})
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.frames...)
}

func TestFileFramesMatchFFmpeg(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL, c.Loop, c.Pace = testClip, false, camera.PaceFast })
	var col collector
	err := src.Run(context.Background(), col.sink)
	if !errors.Is(err, camera.ErrEndOfFile) {
		t.Fatalf("Run = %v, want ErrEndOfFile", err)
	}
	got := col.snapshot()
	if len(got) != testClipFrames {
		t.Fatalf("got %d frames, want %d (ffprobe's count)", len(got), testClipFrames)
	}
	want := ffmpegDecode(t, testClip, 320, 240, testClipFrames)
	for i, f := range got {
		if f.seq != uint64(i+1) || f.w != 320 || f.h != 240 {
			t.Fatalf("frame %d: seq %d size %dx%d, want seq %d 320x240", i, f.seq, f.w, f.h, i+1)
		}
		if d := meanAbsDiffBytes(f.data, want[i]); d > 1.0 {
			t.Errorf("frame %d differs from ffmpeg's decode by %.2f per byte on average", i, d)
		}
	}
	st := src.State()
	if st.Phase != camera.PhaseStopped || st.Frames != testClipFrames || st.Drops != 0 || st.Width != 320 || st.Height != 240 || st.FPS != 10 {
		t.Errorf("state after end: %+v", st)
	}
}

func meanAbsDiffBytes(a, b []byte) float64 {
	if len(a) != len(b) {
		return 255
	}
	var sum int
	for i := range a {
		d := int(a[i]) - int(b[i])
		sum += max(d, -d)
	}
	return float64(sum) / float64(len(a))
}

func TestFileLoops(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL, c.Pace = testClip, camera.PaceFast })
	col := collector{max: 2*testClipFrames + 5}
	stop := runSource(t, src, col.sink)
	waitFor(t, src, 20*time.Second, "two passes through the clip", func(st camera.State) bool { return st.Frames >= 2*testClipFrames+5 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	got := col.snapshot()
	want := ffmpegDecode(t, testClip, 320, 240, 5)
	for i, f := range got {
		if f.seq != uint64(i+1) {
			t.Fatalf("frame %d has seq %d: sequence must run on across the loop", i, f.seq)
		}
		if k := i % testClipFrames; k < 5 {
			if d := meanAbsDiffBytes(f.data, want[k]); d > 1.0 {
				t.Errorf("frame %d (pass %d, clip frame %d) differs from ffmpeg's decode by %.2f", i, i/testClipFrames, k, d)
			}
		}
	}
	if st := src.State(); st.Phase != camera.PhaseStopped || st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("looping is not a failure, state: %+v", st)
	}
}

func TestFileRealtimePacing(t *testing.T) {
	const fps = 50
	src := newSource(t, func(c *camera.Config) { c.URL, c.Loop, c.FPS = testClip, false, fps })
	var col collector
	start := time.Now()
	if err := src.Run(context.Background(), col.sink); !errors.Is(err, camera.ErrEndOfFile) {
		t.Fatalf("Run = %v", err)
	}
	elapsed := time.Since(start)
	// A lower bound only: a slow machine makes pacing later, never earlier.
	if min := time.Duration(testClipFrames-1) * time.Second / fps * 9 / 10; elapsed < min {
		t.Errorf("%d frames paced at %d fps took %v, want at least %v", testClipFrames, fps, elapsed, min)
	}
	t.Logf("%d frames at fps=%d took %v (ideal %v)", testClipFrames, fps, elapsed, time.Duration(testClipFrames-1)*time.Second/fps)
}

// Waiting between paced frames is not a stall: a 2 fps file under a 300ms stall timeout
// streams on without a reconnect.
func TestSlowPacedFileIsNotAStall(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL, c.FPS, c.StallTimeout = testClip, 2, 300*time.Millisecond })
	runSource(t, src, func(f *camera.Frame) { f.Release() })
	st := waitFor(t, src, 10*time.Second, "three paced frames", func(st camera.State) bool { return st.Frames >= 3 })
	if st.Reconnects != 0 || st.LastError != "" || st.Phase != camera.PhaseStreaming {
		t.Errorf("pacing was taken for a stall: %+v", st)
	}
}

func TestGStreamerPipelineReopensAfterEOS(t *testing.T) {
	src := newSource(t, func(c *camera.Config) {
		c.URL = "gst:videotestsrc num-buffers=10 pattern=white ! video/x-raw,width=160,height=120,framerate=100/1 ! videoconvert ! video/x-raw,format=BGR ! appsink"
	})
	camera.SetBackoff(src, 50*time.Millisecond)
	col := collector{max: 25}
	runSource(t, src, col.sink)
	st := waitFor(t, src, 20*time.Second, "frames across two pipeline runs", func(st camera.State) bool { return st.Frames >= 25 && st.Reconnects >= 2 })
	if !strings.Contains(st.LastError, "GStreamer") {
		t.Errorf("LastError %q should say the GStreamer pipeline ended", st.LastError)
	}
	for i, f := range col.snapshot() {
		if f.seq != uint64(i+1) || f.w != 160 || f.h != 120 {
			t.Fatalf("frame %d: seq %d size %dx%d", i, f.seq, f.w, f.h)
		}
		for j, v := range f.data {
			if v != 255 {
				t.Fatalf("frame %d byte %d = %d, want 255 (pattern=white)", i, j, v)
			}
		}
	}
}

// assertServedGray checks a frame against the gray levels jpegFrames encodes (40+i*20),
// reading a corner away from the drawn digits.
func assertServedGray(t *testing.T, f received, n int) {
	t.Helper()
	if f.w != 160 || f.h != 120 {
		t.Fatalf("frame size %dx%d, want 160x120", f.w, f.h)
	}
	px := f.data[(5*160+5)*3 : (5*160+5)*3+3]
	for i := range n {
		v := 40 + i*20
		ok := true
		for _, c := range px {
			if d := int(c) - v; d < -4 || d > 4 {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf("pixel %v matches none of the served gray levels", px)
}

func TestHTTPMJPEGReconnectsWhenServerReturns(t *testing.T) {
	const nFrames = 5
	srv := newMJPEGServer(t, jpegFrames(t, nFrames), 25)
	src := newSource(t, func(c *camera.Config) { c.URL = srv.URL() })
	col := collector{max: 10}
	runSource(t, src, col.sink)
	waitFor(t, src, 20*time.Second, "streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming && st.Frames >= 10 })
	for _, f := range col.snapshot() {
		assertServedGray(t, f, nFrames)
	}

	srv.Stop()
	down := waitFor(t, src, 20*time.Second, "retrying after the server died", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying })
	if !strings.Contains(down.LastError, srv.addr) {
		t.Errorf("LastError %q should name the stream", down.LastError)
	}
	srv.Start()
	back := time.Now()
	// The first attempt scheduled after the server's return must be at most 2 s later and
	// must succeed. Attempts already running when it returned do not count: either the source
	// is streaming again (an attempt under way when the server came back succeeded), or it
	// waits for a retry scheduled after the return.
	sched := waitFor(t, src, 20*time.Second, "streaming, or a retry scheduled after the server's return", func(st camera.State) bool {
		return st.Phase == camera.PhaseStreaming || (st.Phase == camera.PhaseRetrying && st.NextRetry.After(back))
	})
	up := waitFor(t, src, 20*time.Second, "streaming again", func(st camera.State) bool {
		return st.Phase == camera.PhaseStreaming && st.Frames > down.Frames
	})
	t.Logf("server back -> streaming again: %v (state then: %s, next retry %v after the server's return)",
		up.Since.Sub(back).Round(time.Millisecond), sched.Phase, sched.NextRetry.Sub(back).Round(time.Millisecond))
	switch sched.Phase {
	case camera.PhaseRetrying:
		if d := sched.NextRetry.Sub(back); d > 2*time.Second {
			t.Errorf("next retry was scheduled %v after the server's return, want <= 2s", d)
		}
		if up.Reconnects != sched.Reconnects+1 {
			t.Errorf("the retry scheduled after the server's return failed: reconnects %d -> %d", sched.Reconnects, up.Reconnects)
		}
	case camera.PhaseStreaming:
		if d := sched.Since.Sub(back); d > 2*time.Second {
			t.Errorf("streaming again %v after the server's return, want <= 2s", d)
		}
	}
}

func TestHTTPStalledStreamReopens(t *testing.T) {
	srv := newMJPEGServer(t, jpegFrames(t, 2), 25)
	src := newSource(t, func(c *camera.Config) { c.URL, c.StallTimeout = srv.URL(), 500*time.Millisecond })
	camera.SetBackoff(src, 50*time.Millisecond)
	var col collector
	col.max = 1
	runSource(t, src, col.sink)
	waitFor(t, src, 20*time.Second, "streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming })
	srv.Hang()
	st := waitFor(t, src, 20*time.Second, "a stall noticed", func(st camera.State) bool { return st.Reconnects >= 1 && st.LastError != "" })
	// FFmpeg's read timeout and the watchdog are both set to the stall timeout; either may
	// report it first.
	if !strings.Contains(st.LastError, "stalled") && !strings.Contains(st.LastError, "no data for 500ms") {
		t.Errorf("LastError %q should report the stall", st.LastError)
	}
	srv.Stop()
	srv.Start()
	waitFor(t, src, 20*time.Second, "streaming again", func(s camera.State) bool { return s.Phase == camera.PhaseStreaming && s.Frames > st.Frames })
}

// A GStreamer read has no timeout of its own: only the watchdog notices the stall, and the
// reader stays in OpenCV until the connection ends.
func TestWatchdogReportsStallOfBlockingBackend(t *testing.T) {
	srv := newMJPEGServer(t, jpegFrames(t, 2), 25)
	src := newSource(t, func(c *camera.Config) {
		c.URL = "gst:souphttpsrc location=" + srv.URL() + " ! multipartdemux ! jpegdec ! videoconvert ! video/x-raw,format=BGR ! appsink"
		c.StallTimeout = 500 * time.Millisecond
	})
	camera.SetBackoff(src, 50*time.Millisecond)
	runSource(t, src, func(f *camera.Frame) { f.Release() })
	waitFor(t, src, 20*time.Second, "streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming })
	srv.Hang()
	st := waitFor(t, src, 20*time.Second, "the watchdog", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying })
	if st.LastError != "stalled: no frame for 500ms" {
		t.Errorf("LastError = %q, want the watchdog's stall", st.LastError)
	}
	srv.Stop() // ends the blocked read
	srv.Start()
	waitFor(t, src, 20*time.Second, "streaming again", func(s camera.State) bool { return s.Phase == camera.PhaseStreaming && s.Frames > st.Frames })
}

func TestNeverOpeningCameraKeepsRetrying(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL = "rtsp://127.0.0.1:1/nothing-listens-here" })
	camera.SetBackoff(src, 20*time.Millisecond)
	stop := runSource(t, src, func(f *camera.Frame) { t.Error("got a frame"); f.Release() })
	st := waitFor(t, src, 30*time.Second, "several failed attempts", func(st camera.State) bool { return st.Reconnects >= 3 && st.LastError != "" })
	if !strings.Contains(st.LastError, "rtsp://127.0.0.1:1/nothing-listens-here would not open") {
		t.Errorf("LastError = %q", st.LastError)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if st := src.State(); st.Phase != camera.PhaseStopped || st.Frames != 0 {
		t.Errorf("state after stop: %+v", st)
	}
}

func TestUnopenableSourcesReportWhy(t *testing.T) {
	notVideo := filepath.Join(t.TempDir(), "notes.mp4")
	if err := os.WriteFile(notVideo, []byte("not a video"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"gst", "gst:no_such_gst_element ! appsink", "GStreamer pipeline would not start"},
		{"file", notVideo, "video file " + notVideo + " would not open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t, func(c *camera.Config) { c.URL = tc.url })
			camera.SetBackoff(src, 20*time.Millisecond)
			runSource(t, src, func(f *camera.Frame) { t.Error("got a frame"); f.Release() })
			st := waitFor(t, src, 10*time.Second, "retrying", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying && st.Reconnects >= 1 })
			if !strings.HasPrefix(st.LastError, tc.want) {
				t.Errorf("LastError = %q, want it to start with %q", st.LastError, tc.want)
			}
		})
	}
}

func TestMissingV4L2DeviceRetriesWithClearError(t *testing.T) {
	dev := "/dev/video9"
	for i := 9; ; i++ {
		dev = fmt.Sprintf("/dev/video%d", i)
		if _, err := os.Stat(dev); os.IsNotExist(err) {
			break
		}
	}
	src := newSource(t, func(c *camera.Config) { c.URL, c.Width, c.Height, c.FPS, c.FourCC = dev, 640, 480, 30, "MJPG" })
	camera.SetBackoff(src, 20*time.Millisecond)
	runSource(t, src, func(f *camera.Frame) { f.Release() })
	st := waitFor(t, src, 10*time.Second, "retrying", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying && st.Reconnects >= 2 })
	want := "V4L2 device " + dev + " does not exist: is the camera plugged in?"
	if !strings.HasPrefix(st.LastError, want) {
		t.Errorf("LastError = %q, want it to start with %q", st.LastError, want)
	}
}

func TestConsumerHoldingAllFramesCausesDropsNotBlocking(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL, c.Pace = testClip, camera.PaceFast })
	var mu sync.Mutex
	var held []*camera.Frame
	stop := runSource(t, src, func(f *camera.Frame) {
		mu.Lock()
		held = append(held, f)
		mu.Unlock()
	})
	st := waitFor(t, src, 20*time.Second, "drops", func(st camera.State) bool { return st.Drops >= 30 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st = src.State()
	if len(held) != camera.FramePoolSize {
		t.Fatalf("sink got %d frames while holding all, want the pool size %d", len(held), camera.FramePoolSize)
	}
	if st.Drops != st.Frames-camera.FramePoolSize {
		t.Errorf("drops %d, frames %d: every frame beyond the pool must be a counted drop", st.Drops, st.Frames)
	}
	for i, f := range held {
		if f.Seq != uint64(i+1) {
			t.Errorf("held frame %d has seq %d", i, f.Seq)
		}
		if f.Mat.Rows() != 240 {
			t.Errorf("held frame %d lost its image after Run returned", i)
		}
	}
	// Frames outlive Run and are freed on Release; a second Release is a bug and panics.
	for _, f := range held {
		f.Release()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a second Release did not panic")
			}
		}()
		held[0].Release()
	}()
}

func TestRunTwiceIsRefused(t *testing.T) {
	src := newSource(t, func(c *camera.Config) { c.URL = testClip })
	runSource(t, src, func(f *camera.Frame) { f.Release() })
	waitFor(t, src, 10*time.Second, "running", func(st camera.State) bool { return st.Phase != camera.PhaseStopped })
	if err := src.Run(context.Background(), func(f *camera.Frame) { f.Release() }); !errors.Is(err, camera.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}
