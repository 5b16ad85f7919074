package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/pageout"
	"github.com/stardetr/stardetr/internal/statelock"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/publish"
)

// service is a running stardetr: every component, built from one configuration, and the
// goroutines that tie them to systemd and HTTP. startService builds it whole or not at all.
type service struct {
	cfg        Config
	configPath string
	log        *slog.Logger
	notify     notifier
	deviceID   string

	det    *model.Detector
	labels []string    // the model's class names by id
	slots  []io.Closer // the input slots the service made (the detector's own is closed with it)
	pub    *publish.Publisher
	sink   *messageSink
	live   *liveView
	pipe   *pipeline.Pipeline
	srv    *httpServer
	lock   *statelock.Lock

	cancelPipe context.CancelFunc
	pipeDone   chan struct{}
	cancelLoop context.CancelFunc
	loops      sync.WaitGroup
	fatal      chan error
}

// startService returns the running service or an error; on error everything it had started
// is undone, last first. Each step is a method below, in the order it runs.
func startService(ctx context.Context, cfg Config, configPath string, log *slog.Logger) (_ *service, err error) {
	s := &service{cfg: cfg, configPath: configPath, log: log, notify: notifier{log: log.With("component", "systemd")}, fatal: make(chan error, 1)}
	var undo undoStack
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	ln, err := s.claim(&undo)
	if err != nil {
		return nil, err
	}
	info, err := s.openModel(ctx, &undo)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	s.pub, err = publish.New(cfg.MQTT, publish.Options{DeviceID: s.deviceID, StateDir: cfg.StateDir, Logger: log,
		Stats: func() publish.Stats { return statsMessage(s.pipe.Stats(), info.Provider, started) }})
	if err != nil {
		return nil, err
	}
	pub := s.pub
	// Close is safe before Start: it persists the counters and closes the queue.
	undo.push(func() {
		c, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = pub.Close(c)
	})
	cams, err := buildCameras(cfg.Cameras, cfg.Events, s.labels, log)
	if err != nil {
		return nil, err
	}
	if err = s.buildPipeline(info, cams, &undo); err != nil {
		return nil, err
	}
	s.updateRetained()
	// The publisher starts once the pipeline exists: its stats callback reads the pipeline.
	if err = s.pub.Start(ctx); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.pipe.Collector(), s.pub, providerGauge(info.Provider))
	if s.sink.snaps != nil {
		reg.MustRegister(s.sink.snaps.collector())
	}
	if ln != nil {
		if err = s.serveHTTP(ln, reg); err != nil {
			return nil, err
		}
	}
	s.runPipeline()
	releaseFilePages(log, "after start-up")
	log.Info("stardetr running", "version", Version, "device", s.deviceID, "cameras", len(cams))
	return s, nil
}

// buildCameras makes a source (and, for a tracking camera, a scene that names counts by the
// model's labels) for every configured camera.
func buildCameras(cfgs []CameraConfig, ev EventsConfig, labels []string, log *slog.Logger) ([]pipeline.Camera, error) {
	cams := make([]pipeline.Camera, 0, len(cfgs))
	for i, c := range cfgs {
		src, err := camera.NewSource(c.Config, log)
		if err != nil {
			return nil, fmt.Errorf("cameras[%d] (%s): %w", i, c.Name, err)
		}
		cams = append(cams, pipeline.Camera{Name: c.Name, Key: c, Source: src, Policy: c.Publish,
			Scene: newScene(c, ev, labels), Events: newEventLimit(c, ev),
			Detect: c.Detect, Motion: c.Motion, Objects: c.Objects})
	}
	return cams, nil
}

// undoStack holds what startService must undo if a later step fails.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

// run undoes every step, last first.
func (u *undoStack) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
}

// claim takes what another instance or program could hold before anything heavy starts: the
// state folder's lock, then the HTTP port (nil without http.listen), so that a second
// instance or a port in use fails in milliseconds, before the model loads.
func (s *service) claim(undo *undoStack) (net.Listener, error) {
	cfg := &s.cfg
	var err error
	if s.deviceID, err = cfg.deviceID(); err != nil {
		return nil, err
	}
	if err = os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w: create it or point state_dir at a writable folder", cfg.StateDir, err)
	}
	// The lock comes before anything reads or writes the state folder.
	lock, err := statelock.Acquire(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	undo.push(func() { _ = lock.Release() })
	if cfg.HTTP.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w: stop what uses the port, pick a free one, or set http.listen to \"\"", cfg.HTTP.Listen, err)
	}
	undo.push(func() { _ = ln.Close() })
	return ln, nil
}

// openModel loads the detector and checks the config's class names against the model's.
func (s *service) openModel(ctx context.Context, undo *undoStack) (model.Info, error) {
	// The libraries' pages that loading touched go back before the model is built, so that
	// they do not add to the peak it reaches, and again once running (internal/pageout).
	releaseFilePages(s.log, "before loading the model")
	det, err := model.Open(ctx, s.cfg.Model, s.cfg.StateDir, s.log.With("component", "model"))
	if err != nil {
		return model.Info{}, err
	}
	s.det = det
	undo.push(func() { _ = det.Close() })
	info := det.Info()
	s.labels = info.Names
	return info, checkModelLabels(&s.cfg, s.labels)
}

// buildPipeline makes the input slots, the message sink (with the event snapshot store) and
// the pipeline over cams.
func (s *service) buildPipeline(info model.Info, cams []pipeline.Camera, undo *undoStack) error {
	cfg := &s.cfg
	slots, err := s.inputSlots(undo)
	if err != nil {
		return err
	}
	s.sink = &messageSink{pub: s.pub, model: info, log: s.log, recent: &recentEvents{n: cfg.Events.Recent}}
	if cfg.Events.SnapshotMaxMB > 0 {
		if s.sink.snaps, err = openEventSnapshots(filepath.Join(cfg.StateDir, "events"), int64(cfg.Events.SnapshotMaxMB)<<20,
			cfg.Events.SnapshotMaxPerSecond, s.log.With("component", "snapshots")); err != nil {
			return err
		}
		undo.push(s.sink.snaps.Close)
	}
	s.pipe = pipeline.New(slots, s.sink, pipeline.Options{BatchWait: cfg.Model.BatchWait}, s.log.With("component", "pipeline"))
	return s.pipe.Update(cams)
}

// inputSlots makes two input slots: the next frames are preprocessed while the model runs on
// the current ones. Each holds up to model.batch frames, one per camera. With model.batch 1
// the first is the detector's own input (the one its warm-up ran on), so that the daemon holds
// two input tensors, not three (README, "Memory").
func (s *service) inputSlots(undo *undoStack) ([]pipeline.Slot, error) {
	batch := s.cfg.Model.Batch
	slots := make([]pipeline.Slot, 2)
	for i := range slots {
		if batch == 1 && i == 0 {
			slots[i] = pipeline.OneFrame(s.det.DefaultInput()) // closed with the detector
			continue
		}
		var closer io.Closer
		if batch == 1 {
			in, err := s.det.NewInput()
			if err != nil {
				return nil, fmt.Errorf("model input: %w", err)
			}
			slots[i], closer = pipeline.OneFrame(in), in
		} else {
			b, err := s.det.NewBatch(batch)
			if err != nil {
				return nil, fmt.Errorf("model.batch: %w", err)
			}
			slots[i], closer = b, b
		}
		undo.push(func() { _ = closer.Close() })
		s.slots = append(s.slots, closer)
	}
	return slots, nil
}

// serveHTTP starts the HTTP server (http.go) on ln.
func (s *service) serveHTTP(ln net.Listener, reg *prometheus.Registry) error {
	h, err := s.handler(reg)
	if err != nil {
		return err
	}
	s.srv = newHTTPServer(ln, h, defaultHTTPLimits(s.cfg.HTTP.MaxConnections), s.log)
	reg.MustRegister(s.srv)
	s.srv.RegisterOnShutdown(s.live.cancel) // live streams end with the server
	go func() {
		if err := s.srv.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fatal <- fmt.Errorf("http server: %w", err)
		}
	}()
	s.log.Info("http listening", "addr", ln.Addr().String(), "endpoints", endpointList(s.routes(reg)))
	return nil
}

// runPipeline starts the pipeline's goroutine and the service's periodic loops (systemd
// watchdog and status), then tells systemd the service is ready. Nothing after it can fail.
func (s *service) runPipeline() {
	pctx, cancelPipe := context.WithCancel(context.Background())
	s.cancelPipe = cancelPipe
	s.pipeDone = make(chan struct{})
	go func() {
		defer close(s.pipeDone)
		if err := s.pipe.Run(pctx); err != nil {
			s.fatal <- err
		}
	}()
	lctx, cancelLoop := context.WithCancel(context.Background())
	s.cancelLoop = cancelLoop
	s.loop(lctx, watchdogInterval(), s.pingWatchdog)
	s.loop(lctx, 5*time.Second, s.reportStatus)
	s.notify.ready()
}

// releaseFilePages gives back the pages of the executable and libraries that start-up touched
// and nothing uses any more (internal/pageout).
func releaseFilePages(log *slog.Logger, when string) {
	before := processRSS()
	r, err := pageout.Release()
	if err != nil {
		log.Debug("cannot give back start-up pages of the libraries", "when", when, "err", err)
		return
	}
	log.Debug("gave back start-up pages of the libraries", "when", when, "mappings", r.Mappings,
		"rss_before_mb", before>>20, "rss_after_mb", processRSS()>>20)
}

// loop runs fn every interval in a goroutine the service owns; interval 0 disables it.
func (s *service) loop(ctx context.Context, interval time.Duration, fn func()) {
	if interval <= 0 {
		return
	}
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// pingWatchdog feeds systemd's watchdog only while the pipeline makes progress, so a stuck
// inference gets the service restarted.
func (s *service) pingWatchdog() {
	if s.pipe.Progressing(s.cfg.Watchdog.FrameTimeout) {
		s.notify.watchdog()
	} else {
		s.notify.log.Error("pipeline stuck: a frame has been processing for longer than watchdog.frame_timeout; withholding the systemd watchdog ping",
			"frame_timeout", s.cfg.Watchdog.FrameTimeout)
	}
}

func (s *service) reportStatus() {
	st := s.pipe.Stats()
	parts := make([]string, 0, len(st.Cameras))
	for _, c := range st.Cameras {
		parts = append(parts, fmt.Sprintf("%s %s %.1f fps", c.Name, c.State.Phase, c.FPS))
	}
	s.notify.status("%s", strings.Join(parts, ", "))
}

// wait runs until ctx ends (SIGTERM/SIGINT), reloading on SIGHUP, then stops cleanly.
func (s *service) wait(ctx context.Context) int {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return s.stop()
		case err := <-s.fatal:
			s.log.Error("stopping on a fatal error", "err", err)
			s.stop()
			return exitFailure
		case <-hup:
			s.reload()
		}
	}
}

// stop ends the service: stop capture, finish the frame in flight, flush or persist the
// queued messages, publish "stopped", close the model. It returns the exit code.
func (s *service) stop() int {
	s.notify.stopping()
	s.log.Info("stopping")
	code := exitOK
	deadline := time.Now().Add(stopTimeout)
	s.cancelPipe()
	select {
	case <-s.pipeDone:
	case <-time.After(time.Until(deadline) / 2):
		s.log.Error("pipeline did not stop in time: the frame in flight is abandoned")
		code = exitFailure
	}
	s.cancelLoop()
	s.loops.Wait()
	if s.sink.snaps != nil {
		s.sink.snaps.Close() // after the pipeline: nothing saves any more; writes what is queued
	}
	if s.srv != nil {
		c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = s.srv.Shutdown(c)
		cancel()
	}
	c, cancel := context.WithDeadline(context.Background(), deadline)
	if err := s.pub.Close(c); err != nil {
		s.log.Error("mqtt close", "err", err)
		code = exitFailure
	}
	cancel()
	if code == 0 {
		// The model is closed only when the pipeline has stopped using it.
		for _, b := range s.slots {
			_ = b.Close()
		}
		if err := s.det.Close(); err != nil {
			s.log.Error("model close", "err", err)
		}
	}
	// Last: the next instance may start as soon as the lock is free.
	if err := s.lock.Release(); err != nil {
		s.log.Error("release state folder lock", "err", err)
	}
	s.log.Info("stopped", "code", code)
	return code
}

func providerGauge(provider string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "stardetr_model_provider",
		Help:        "The execution provider the model runs on (value 1, provider as label).",
		ConstLabels: prometheus.Labels{"provider": provider},
	})
	g.Set(1)
	return g
}
