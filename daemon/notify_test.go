package daemon

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
)

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
	ns := testenv.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	det := &blockingDetector{release: make(chan struct{})}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det)}, discard{}, pipeline.Options{}, log)
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
	if m := ns.Next(time.Second); m != "WATCHDOG=1" {
		t.Fatalf("idle pipeline: got %q, want WATCHDOG=1", m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testenv.WaitFor(t, 10*time.Second, "the pipeline to get stuck", func() bool { return !p.Progressing(s.cfg.Watchdog.FrameTimeout) })
	s.pingWatchdog()
	if m := ns.Next(300 * time.Millisecond); m != "" {
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
	if m := ns.Next(time.Second); m != "WATCHDOG=1" {
		t.Fatalf("after the stuck frame finished: got %q, want WATCHDOG=1", m)
	}
}
