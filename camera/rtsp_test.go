package camera_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
)

// rtspServer is GStreamer's RTSP server (camera/testdata/rtsp_server.py) on 127.0.0.1.
type rtspServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func (s *rtspServer) url() string { return fmt.Sprintf("rtsp://127.0.0.1:%d/test", s.port) }

func (s *rtspServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(testenv.Python(), filepath.Join("testdata", "rtsp_server.py"), fmt.Sprint(s.port))
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stderr strings.Builder
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start RTSP server: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = s.cmd.Wait()
			s.t.Fatalf("RTSP server did not start (run `make setup` for python3-gst-1.0 and gir1.2-gst-rtsp-server-1.0): %s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		s.t.Fatalf("RTSP server not ready after 20s: %s", stderr.String())
	}
}

func (s *rtspServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// A camera on a real RTSP server streams, retries when the server dies, and streams again
// after it returns on the same address.
func TestRTSPReconnectsWhenServerReturns(t *testing.T) {
	srv := &rtspServer{t: t, port: testenv.FreePort(t)}
	srv.start()
	t.Cleanup(srv.stop)
	src := newSource(t, func(c *camera.Config) {
		c.URL, c.StallTimeout, c.OpenTimeout = srv.url(), 2*time.Second, 3*time.Second
	})
	col := collector{max: 5}
	runSource(t, src, col.sink)
	up := waitFor(t, src, 30*time.Second, "streaming", func(st camera.State) bool { return st.Phase == camera.PhaseStreaming && st.Frames >= 5 })
	if up.Width != 320 || up.Height != 240 {
		t.Errorf("capture reports %dx%d, the server sends 320x240", up.Width, up.Height)
	}
	for _, f := range col.snapshot() {
		if f.w != 320 || f.h != 240 {
			t.Fatalf("frame %d is %dx%d, want 320x240", f.seq, f.w, f.h)
		}
	}

	srv.stop()
	down := waitFor(t, src, 30*time.Second, "retrying after the server died", func(st camera.State) bool { return st.Phase == camera.PhaseRetrying })
	srv.start()
	waitFor(t, src, 60*time.Second, "streaming again", func(st camera.State) bool {
		return st.Phase == camera.PhaseStreaming && st.Frames > down.Frames+3
	})
}
