package camera_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stardetr/stardetr/camera"
)

// BenchmarkFileCapture reads the test clip as fast as it decodes, looping, with a sink that
// releases each frame at once. allocs/op is Go heap allocations per frame in steady state
// (the target is 0; OpenCV's own buffers are reused through the pool).
func BenchmarkFileCapture(b *testing.B) {
	src := newSource(b, func(c *camera.Config) { c.URL, c.Pace = testClip, camera.PaceFast })
	const warmup = 3 * testClipFrames
	var n atomic.Int64
	target := int64(warmup + b.N)
	warm, done := make(chan struct{}), make(chan struct{})
	stop := runSource(b, src, func(f *camera.Frame) {
		f.Release()
		switch n.Add(1) {
		case warmup:
			close(warm)
		case target:
			close(done)
		}
	})
	<-warm
	b.ReportAllocs()
	b.ResetTimer()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("only %d of %d frames in 60s", n.Load()-warmup, b.N)
	}
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	if st := src.State(); st.Drops != 0 {
		b.Errorf("%d drops with a sink that releases at once", st.Drops)
	}
}
