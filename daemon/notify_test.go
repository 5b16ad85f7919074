package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
)

// notifySocket is a fake systemd: a unixgram socket that collects sd_notify datagrams.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ns := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ns.msgs)
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return ns
}

// next returns the next datagram, or "" after the timeout.
func (ns *notifySocket) next(timeout time.Duration) string {
	select {
	case m := <-ns.msgs:
		return m
	case <-time.After(timeout):
		return ""
	}
}

// blockingDetector blocks in Run until released: a stuck inference.
type blockingDetector struct{ release chan struct{} }

func (d *blockingDetector) Preprocess(gocv.Mat) error { return nil }
func (d *blockingDetector) Run() error                { <-d.release; return nil }
func (d *blockingDetector) Decode(w, h int, out []model.Detection) []model.Detection {
	return out
}

type discard struct{}

func (discard) Publish(*pipeline.Message) error { return nil }

// The watchdog ping is sent while the pipeline makes progress and withheld while a frame is
// stuck in inference, so that systemd restarts a hung service.
func TestWatchdogWithheldWhileInferenceIsStuck(t *testing.T) {
	ns := newNotifySocket(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	det := &blockingDetector{release: make(chan struct{})}
	p := pipeline.New([]pipeline.Slot{det}, discard{}, log)
	cfg := camera.DefaultConfig()
	cfg.Name, cfg.URL = "cam", filepath.Join("..", "camera", "testdata", "testsrc-320x240-10fps.mp4")
	src, err := camera.NewSource(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]pipeline.Camera{{Name: "cam", Key: "k", Source: src, Policy: pipeline.DefaultPolicy()}}); err != nil {
		t.Fatal(err)
	}
	s := &service{pipe: p, log: log, notify: notifier{log: log}, cfg: DefaultConfig()}
	s.cfg.Watchdog.FrameTimeout = time.Second

	s.pingWatchdog() // idle pipeline: progressing
	if m := ns.next(time.Second); m != "WATCHDOG=1" {
		t.Fatalf("idle pipeline: got %q, want WATCHDOG=1", m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for p.Progressing(s.cfg.Watchdog.FrameTimeout) {
		if time.Now().After(deadline) {
			t.Fatal("the pipeline never got stuck")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.pingWatchdog()
	if m := ns.next(300 * time.Millisecond); m != "" {
		t.Fatalf("stuck inference: got %q, want no watchdog ping", m)
	}
	if h := s.health(); h.OK || !strings.Contains(h.Model, "stuck") {
		t.Errorf("healthz while stuck: %+v", h)
	}
	close(det.release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.pingWatchdog()
	if m := ns.next(time.Second); m != "WATCHDOG=1" {
		t.Fatalf("after the stuck frame finished: got %q, want WATCHDOG=1", m)
	}
}
