//go:build matprofile

// Built only with gocv's matprofile tag, which counts every live Mat:
//
//	go test -tags gocv_specific_modules,gocv_videoio,matprofile -run MatProfile ./camera/...
package camera_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
)

// matsPerSource is what a running source may own: its pool and the reader's scratch Mat.
const matsPerSource = camera.FramePoolSize + 1

func TestMatProfileNoLeakAcrossReconnectsAndShutdown(t *testing.T) {
	jpegs := jpegFrames(t, 3)
	base := gocv.MatProfile.Count()
	maxSeen := base
	sample := func() {
		if n := gocv.MatProfile.Count(); n > maxSeen {
			maxSeen = n
		}
	}

	srv := newMJPEGServer(t, jpegs, 50)
	httpSrc := newSource(t, func(c *camera.Config) { c.Name, c.URL = "http", srv.URL() })
	gstSrc := newSource(t, func(c *camera.Config) {
		c.Name = "gst"
		c.URL = "gst:videotestsrc num-buffers=15 ! video/x-raw,width=64,height=48,framerate=200/1 ! videoconvert ! video/x-raw,format=BGR ! appsink"
	})
	camera.SetBackoff(gstSrc, 20*time.Millisecond)
	fileSrc := newSource(t, func(c *camera.Config) { c.Name, c.URL, c.Pace = "file", testClip, camera.PaceFast })

	// The consumer keeps the latest frame of each source (the pipeline's hand-off) and
	// releases the one it replaces; the frames it holds at the end outlive Run.
	var mu sync.Mutex
	latest := map[string]*camera.Frame{}
	sink := func(f *camera.Frame) {
		mu.Lock()
		defer mu.Unlock()
		if old := latest[f.Camera]; old != nil {
			old.Release()
		}
		latest[f.Camera] = f
	}
	stops := []func() error{runSource(t, httpSrc, sink), runSource(t, gstSrc, sink), runSource(t, fileSrc, sink)}

	for round := range 3 {
		waitFor(t, httpSrc, 20*time.Second, "http streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming })
		sample()
		srv.Stop()
		waitFor(t, httpSrc, 20*time.Second, "http retrying", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying })
		sample()
		srv.Start()
		waitFor(t, gstSrc, 20*time.Second, "gst reopened", func(st camera.State) bool { return st.Reconnects >= uint64(round+1) })
		sample()
	}
	waitFor(t, httpSrc, 20*time.Second, "http streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming })
	waitFor(t, fileSrc, 20*time.Second, "file looped", func(st camera.State) bool { return st.Frames > 3*20 })
	sample()
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
	}
	if max := base + 3*matsPerSource; maxSeen > max {
		t.Errorf("up to %d Mats live while running, want at most %d (pool and scratch per source): Mats are allocated per frame or reconnect", maxSeen, max)
	}
	mu.Lock()
	held := len(latest)
	for _, f := range latest {
		f.Release()
	}
	mu.Unlock()
	if held != 3 {
		t.Errorf("consumer held %d frames at the end, want one per source", held)
	}
	if n := gocv.MatProfile.Count(); n != base {
		var b bytes.Buffer
		gocv.MatProfile.WriteTo(&b, 1)
		t.Fatalf("%d Mats live after shutdown, %d before: leaked Mats:\n%s", n, base, b.String())
	}
	st := httpSrc.State()
	t.Logf("http: %d reconnects, %d frames; gst: %d reconnects; file: %d frames; peak Mats %d (base %d)",
		st.Reconnects, st.Frames, gstSrc.State().Reconnects, fileSrc.State().Frames, maxSeen, base)
}
