package camera_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
)

// redirectStderr points file descriptor 2, where FFmpeg prints by default, at a file until
// the returned function restores it and returns what was written.
func redirectStderr(t *testing.T) func() string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	return func() string {
		_ = syscall.Dup3(saved, 2, 0)
		_ = syscall.Close(saved)
		b, _ := os.ReadFile(f.Name())
		f.Close()
		return string(b)
	}
}

// An MJPEG stream that mixes corrupt parts with good ones keeps flowing: the good frames
// arrive on one open connection, the bad ones are skipped and counted, and FFmpeg's
// complaints about them go to the log at debug level instead of raw to stderr.
func TestMJPEGCorruptPartsAreSkipped(t *testing.T) {
	good := jpegFrames(t, 3)
	truncated := good[1][:len(good[1])/2]
	garbage := []byte("this is not a JPEG at all, but it has a Content-Length")
	headerless := append([]byte(nil), good[2]...)
	copy(headerless[2:], bytes.Repeat([]byte{0xff}, 200)) // tables destroyed, markers kept
	frames := [][]byte{good[0], truncated, good[1], garbage, good[2], headerless}
	srv := newMJPEGServer(t, frames, 20)

	var logs testenv.LogBuffer
	if !camera.CaptureFFmpegLog(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))) {
		t.Fatal("no FFmpeg found in the process: OpenCV's videoio should have loaded libavutil")
	}
	defer camera.CaptureFFmpegLog(nil)
	stderr := redirectStderr(t)
	src := newSource(t, func(c *camera.Config) { c.URL = srv.URL() })
	var col collector
	stop := runSource(t, src, col.sink)
	st := waitFor(t, src, 30*time.Second, "30 frames", func(st camera.State) bool { return st.Frames >= 30 })
	_ = stop()
	raw := stderr()

	if st.Reconnects != 0 {
		t.Fatalf("the stream was reopened %d times (last error %q): corrupt parts should be skipped", st.Reconnects, st.LastError)
	}
	if st.Undecodable < 10 {
		t.Fatalf("%d undecodable frames counted in %d good ones, want about one per good frame (3 of each 6 parts are bad)", st.Undecodable, st.Frames)
	}
	for _, f := range col.snapshot() {
		assertServedGray(t, f, 3)
	}
	if strings.Contains(raw, "[mjpeg @") {
		t.Fatalf("FFmpeg wrote to stderr directly:\n%s", raw)
	}
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "component=ffmpeg") {
		t.Fatalf("FFmpeg's complaints did not reach the log at debug level:\n%s", logs.String())
	}
	t.Logf("%d good frames, %d undecodable skipped, 0 reconnects; FFmpeg log: %d lines", st.Frames, st.Undecodable, strings.Count(logs.String(), "\n"))
}

// A stream that delivers frames for a while and then drops, again and again, is retried
// at the first step of the schedule each time: the backoff starts over after a session that
// streamed, rather than growing as for a camera that never opens.
func TestBackoffResetsAfterStreaming(t *testing.T) {
	jpg := jpegFrames(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=stardetrframe")
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); {
			fmt.Fprintf(w, "--stardetrframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg))
			w.Write(jpg)
			io.WriteString(w, "\r\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// Every retry is logged with its wait (retry_in): the log is read instead of polling State
	// for a retrying phase that lasts only one step (100 ms) and a busy machine may not see.
	var logs testenv.LogBuffer
	c := camera.DefaultConfig()
	c.Name = "test"
	c.URL = "http://" + ln.Addr().String() + "/s.mjpg"
	src, err := camera.NewSource(c, slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), nil)))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	camera.SetBackoff(src, 100*time.Millisecond, 3*time.Second, 10*time.Second)
	camera.SetBackoffReset(src, 500*time.Millisecond)
	var col collector
	col.max = 1
	runSource(t, src, col.sink)
	waitFor(t, src, 60*time.Second, "4 reconnects after streaming", func(st camera.State) bool { return st.Reconnects >= 4 })
	waits := regexp.MustCompile(`retry_in=(\S+)`).FindAllStringSubmatch(logs.String(), -1)
	if len(waits) < 4 {
		t.Fatalf("%d retries logged with retry_in, want >= 4", len(waits))
	}
	var longest time.Duration
	for _, m := range waits[:4] {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("retry_in=%s: %v", m[1], err)
		}
		longest = max(longest, d)
	}
	if longest > time.Second {
		t.Fatalf("a retry waited %v after a session that streamed: the schedule did not start over", longest)
	}
	t.Logf("4 drops after streaming: longest retry wait %v (schedule 100ms, 3s, 10s)", longest.Round(time.Millisecond))
}
