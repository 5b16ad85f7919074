package camera_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
)

// testClip is the committed clip: ffmpeg -f lavfi -i testsrc=size=320x240:rate=10 -t 2
// -c:v libx264 -pix_fmt yuv420p -preset veryfast -g 10 -bf 0 -an -movflags +faststart.
// ffprobe: h264, 320x240, 10/1 fps, 20 frames.
const (
	testClip       = "testdata/testsrc-320x240-10fps.mp4"
	testClipFrames = 20
)

// jpegFrames encodes n distinct 160x120 images with gocv.IMEncode; image i is filled with
// gray level 40+i*20 so a receiver can tell which one it got.
func jpegFrames(t testing.TB, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		m := gocv.NewMatWithSize(120, 160, gocv.MatTypeCV8UC3)
		v := float64(40 + i*20)
		m.SetTo(gocv.NewScalar(v, v, v, 0))
		gocv.PutText(&m, fmt.Sprint(i), image.Pt(10, 60), gocv.FontHersheySimplex, 1, color.RGBA{255, 0, 0, 0}, 2)
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
		m.Close()
		if err != nil {
			t.Fatalf("IMEncode: %v", err)
		}
		out[i] = append([]byte(nil), buf.GetBytes()...)
		buf.Close()
	}
	return out
}

// mjpegServer serves multipart/x-mixed-replace JPEG frames on a fixed 127.0.0.1 port, the
// way IP cameras serve MJPEG over HTTP. Stop kills it (open connections included); Start
// brings it back on the same port.
type mjpegServer struct {
	t      testing.TB
	addr   string
	frames [][]byte
	period time.Duration

	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
	hang chan struct{} // when closed, handlers stop sending but keep the connection open
}

func newMJPEGServer(t testing.TB, frames [][]byte, fps int) *mjpegServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mjpegServer{t: t, addr: ln.Addr().String(), frames: frames, period: time.Second / time.Duration(fps)}
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

func (s *mjpegServer) URL() string { return "http://" + s.addr + "/stream.mjpg" }

func (s *mjpegServer) serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = make(chan struct{})
	hang := s.hang
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=stardetrframe")
		fl := w.(http.Flusher)
		tick := time.NewTicker(s.period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-hang:
				<-r.Context().Done()
				return
			default:
			}
			jpg := s.frames[i%len(s.frames)]
			if _, err := fmt.Fprintf(w, "--stardetrframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg)); err != nil {
				return
			}
			if _, err := w.Write(jpg); err != nil {
				return
			}
			if _, err := io.WriteString(w, "\r\n"); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})}
	done := make(chan struct{})
	s.done = done
	srv := s.srv
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("mjpeg server: %v", err)
		}
	}()
}

// Stop closes the listener and every connection, and waits for the server goroutine.
func (s *mjpegServer) Stop() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	<-done
}

// Start serves again on the same port.
func (s *mjpegServer) Start() {
	var ln net.Listener
	var err error
	// The port may linger for a moment after Close.
	if !testenv.Poll(time.Second, 20*time.Millisecond, func() bool {
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	}) {
		s.t.Fatalf("mjpeg server restart on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// Hang makes every connection stop sending while staying open: a stalled camera.
func (s *mjpegServer) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.hang)
}

// runSource runs src in a goroutine and returns a stop function that cancels it and returns
// Run's error.
func runSource(t testing.TB, src *camera.Source, sink func(*camera.Frame)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, sink) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatalf("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls cond until it holds, failing the test after limit (a liveness bound, not a
// timing assertion) with the source's state.
func waitFor(t testing.TB, src *camera.Source, limit time.Duration, what string, cond func(camera.State) bool) camera.State {
	t.Helper()
	var st camera.State
	testenv.WaitFor(t, limit, what, func() bool {
		st = src.State()
		return cond(st)
	})
	return st
}

// newSource builds a source from a config that starts from DefaultConfig.
func newSource(t testing.TB, mod func(*camera.Config)) *camera.Source {
	t.Helper()
	c := camera.DefaultConfig()
	c.Name = "test"
	mod(&c)
	src, err := camera.NewSource(c, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src
}

// ffmpegDecode decodes the first n frames of a video to BGR with the ffmpeg command, an
// independent decode path to compare OpenCV's frames against.
func ffmpegDecode(t testing.TB, path string, w, h, n int) [][]byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg not found: run `make setup` (Debian package ffmpeg)")
	}
	raw := filepath.Join(t.TempDir(), "frames.bgr")
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", path, "-frames:v", fmt.Sprint(n), "-f", "rawvideo", "-pix_fmt", "bgr24", "-y", raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg decode: %v: %s", err, out)
	}
	data, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	sz := w * h * 3
	if len(data) != sz*n {
		t.Fatalf("ffmpeg decoded %d bytes, want %d frames of %d", len(data), n, sz)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = data[i*sz : (i+1)*sz]
	}
	return out
}
