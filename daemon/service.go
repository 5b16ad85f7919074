package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
// is undone. The result is unnamed on purpose: the undo closures use s, and a named result
// would be cleared by `return nil, err` before they run.
func startService(ctx context.Context, cfg Config, configPath string, log *slog.Logger) (_ *service, err error) {
	s := &service{cfg: cfg, configPath: configPath, log: log, notify: notifier{log: log}, fatal: make(chan error, 1)}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
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
	undo = append(undo, func() { _ = lock.Release() })
	// The port is taken before the model loads, so that a port in use fails in milliseconds.
	var ln net.Listener
	if cfg.HTTP.Listen != "" {
		if ln, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return nil, fmt.Errorf("http.listen %s: %w: stop what uses the port, pick a free one, or set http.listen to \"\"", cfg.HTTP.Listen, err)
		}
		undo = append(undo, func() { _ = ln.Close() })
	}

	// The libraries' pages that loading touched go back before the model is built, so that
	// they do not add to the peak it reaches, and again once running (internal/pageout).
	releaseFilePages(log, "before loading the model")
	s.det, err = model.Open(ctx, cfg.Model, cfg.StateDir, log.With("component", "model"))
	if err != nil {
		return nil, err
	}
	det := s.det
	undo = append(undo, func() { _ = det.Close() })
	info := s.det.Info()
	s.labels = info.Names
	if err = checkModelLabels(&cfg, s.labels); err != nil {
		return nil, err
	}

	started := time.Now()
	s.pub, err = publish.New(cfg.MQTT, publish.Options{DeviceID: s.deviceID, StateDir: cfg.StateDir, Logger: log,
		Stats: func() publish.Stats { return statsMessage(s.pipe.Stats(), info.Provider, started) }})
	if err != nil {
		return nil, err
	}
	// Close is safe before Start: it persists the counters and closes the queue.
	undo = append(undo, func() {
		c, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = s.pub.Close(c)
	})

	cams, err := buildCameras(cfg.Cameras, cfg.Events, s.labels, log)
	if err != nil {
		return nil, err
	}
	// Two input slots: the next frames are preprocessed while the model runs on the current
	// ones. Each holds up to model.batch frames, one per camera. With model.batch 1 the first
	// is the detector's own input (the one its warm-up ran on), so that the daemon holds two
	// input tensors, not three (README, "Memory").
	slots := make([]pipeline.Slot, 2)
	for i := range slots {
		if cfg.Model.Batch == 1 && i == 0 {
			slots[i] = pipeline.OneFrame(s.det.DefaultInput()) // closed with the detector
			continue
		}
		var closer io.Closer
		if cfg.Model.Batch == 1 {
			in, ierr := s.det.NewInput()
			if ierr != nil {
				return nil, fmt.Errorf("model input: %w", ierr)
			}
			slots[i], closer = pipeline.OneFrame(in), in
		} else {
			b, berr := s.det.NewBatch(cfg.Model.Batch)
			if berr != nil {
				return nil, fmt.Errorf("model.batch: %w", berr)
			}
			slots[i], closer = b, b
		}
		undo = append(undo, func() { _ = closer.Close() })
		s.slots = append(s.slots, closer)
	}
	s.sink = &messageSink{pub: s.pub, model: info, log: log, recent: &recentEvents{n: cfg.Events.Recent}}
	if cfg.Events.SnapshotMaxMB > 0 {
		if s.sink.snaps, err = openEventSnapshots(filepath.Join(cfg.StateDir, "events"), int64(cfg.Events.SnapshotMaxMB)<<20,
			cfg.Events.SnapshotMaxPerSecond, log); err != nil {
			return nil, err
		}
		undo = append(undo, s.sink.snaps.Close)
	}
	s.pipe = pipeline.New(slots, s.sink, pipeline.Options{BatchWait: cfg.Model.BatchWait}, log.With("component", "pipeline"))
	if err = s.pipe.Update(cams); err != nil {
		return nil, err
	}
	s.applyRetained()
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
		h, herr := s.handler(reg)
		if herr != nil {
			return nil, herr
		}
		s.srv = newHTTPServer(ln, h, defaultHTTPLimits(cfg.HTTP.MaxConnections), log)
		reg.MustRegister(s.srv)
		s.srv.RegisterOnShutdown(s.live.cancel) // live streams end with the server
		go func() {
			if err := s.srv.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.fatal <- fmt.Errorf("http server: %w", err)
			}
		}()
		log.Info("http listening", "addr", ln.Addr().String(), "endpoints", "/healthz /metrics /snapshot/<camera>.jpg")
	}

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
	releaseFilePages(log, "after start-up")
	log.Info("stardetr running", "version", Version, "device", s.deviceID, "cameras", len(cams))
	return s, nil
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
		s.log.Error("pipeline stuck: a frame has been processing for longer than watchdog.frame_timeout; withholding the systemd watchdog ping",
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

// stop ends the service: stop capture, finish the frame in flight, flush or persist the
// queued messages, publish "stopped", close the model. It returns the exit code.
func (s *service) stop() int {
	s.notify.stopping()
	s.log.Info("stopping")
	code := 0
	deadline := time.Now().Add(stopTimeout)
	s.cancelPipe()
	select {
	case <-s.pipeDone:
	case <-time.After(time.Until(deadline) / 2):
		s.log.Error("pipeline did not stop in time: the frame in flight is abandoned")
		code = 1
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
		code = 1
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

func (s *service) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /snapshot/{file}", s.snapshot)
	mux.HandleFunc("GET /events/{id}/snapshot.jpg", s.eventSnapshot)
	mux.HandleFunc("GET /api/events", s.apiEvents)
	return mux
}

type health struct {
	OK      bool           `json:"ok"`
	Model   string         `json:"model"`
	Queue   string         `json:"queue"`
	Cameras []cameraHealth `json:"cameras"`
}

type cameraHealth struct {
	Name      string  `json:"name"`
	OK        bool    `json:"ok"`
	State     string  `json:"state"`
	Since     string  `json:"since"`
	LastError string  `json:"last_error,omitempty"`
	FPS       float64 `json:"fps"`
	// The detect mode, the model's runs per second over the last 10 s, whether the newest
	// frame shows motion, and the frames motion gating kept from the model.
	Mode      string  `json:"mode"`
	DetectFPS float64 `json:"detections_per_s"`
	Motion    bool    `json:"motion"`
	Skipped   uint64  `json:"frames_skipped"`
}

// healthz answers 200 only when every camera streams or retries within its budget, the
// model runs and the MQTT queue keeps every message; the body says which part is not.
func (s *service) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.health()
	w.Header().Set("Content-Type", "application/json")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

func (s *service) health() health {
	h := health{OK: true, Model: "ok", Queue: "ok"}
	if s.pub == nil {
		h.Queue = "not started"
	} else if q := s.pub.QueueHealth(); q != "" {
		h.OK, h.Queue = false, q
	}
	if !s.pipe.Progressing(s.cfg.Watchdog.FrameTimeout) {
		h.OK, h.Model = false, "stuck: a frame has been processing longer than watchdog.frame_timeout"
	} else if e := s.pipe.ModelError(); e != "" {
		h.OK, h.Model = false, "failing: "+e
	}
	for _, c := range s.pipe.Stats().Cameras {
		ch := cameraHealth{Name: c.Name, State: string(c.State.Phase), LastError: c.State.LastError, FPS: c.FPS}
		ch.Mode, ch.DetectFPS, ch.Motion, ch.Skipped = c.Mode, c.DetectRate, c.Moving, c.Skipped
		if !c.State.Since.IsZero() {
			ch.Since = c.State.Since.UTC().Format(time.RFC3339)
		}
		switch c.State.Phase {
		case camera.PhaseStreaming:
			ch.OK = true
		case camera.PhaseConnecting, camera.PhaseRetrying:
			ch.OK = time.Since(c.LastFrame) < s.cfg.Watchdog.RetryBudget
		}
		if !ch.OK {
			h.OK = false
		}
		h.Cameras = append(h.Cameras, ch)
	}
	return h
}

func (s *service) snapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	if !ok {
		http.Error(w, "use /snapshot/<camera>.jpg", http.StatusNotFound)
		return
	}
	jpg, err := s.pipe.Snapshot(name)
	switch {
	case errors.Is(err, pipeline.ErrNoCamera):
		http.Error(w, fmt.Sprintf("no camera named %q", name), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case jpg == nil:
		http.Error(w, fmt.Sprintf("camera %q has no processed frame yet", name), http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(jpg)
	}
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
