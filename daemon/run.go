package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/pipeline"
)

// stopTimeout bounds a clean shutdown after SIGTERM: the README promises an exit within 5 s
// (systemd's default TimeoutStopSec is 90 s); 4 s leaves a second for the process to exit.
const stopTimeout = 4 * time.Second

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", DefaultConfigPath, "configuration file (YAML)")
	logLevel := fs.String("log-level", "", "override log_level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadAndValidate(*path, func(c *Config) {
		if *logLevel != "" {
			c.LogLevel = *logLevel
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "stardetr run: %v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogLevel)
	if !camera.CaptureFFmpegLog(log) {
		log.Debug("no FFmpeg in this process (OpenCV without it): its log is not captured")
	}
	defer camera.CaptureFFmpegLog(nil)
	s, err := startService(ctx, cfg, *path, log)
	if err != nil {
		log.Error("not started", "err", err)
		return 1
	}
	return s.wait(ctx)
}

// loadAndValidate loads the file, lets the command line override it, and validates.
func loadAndValidate(path string, override func(*Config)) (Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cfg, err
	}
	if override != nil {
		override(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s is invalid:\n  %s", path, strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return cfg, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
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
			return 1
		case <-hup:
			s.reload()
		}
	}
}

// reload re-reads the configuration: cameras and their publish policies are applied (only
// changed cameras restart); changes elsewhere need a restart and are reported as such.
func (s *service) reload() {
	s.notify.reloading()
	defer s.notify.ready()
	cfg, err := loadAndValidate(s.configPath, nil)
	if err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	// The new cameras against what keeps running: the model (and the model.names it was
	// loaded with) and the Home Assistant settings, which a reload does not change.
	running := s.cfg
	running.Cameras = cfg.Cameras
	if err := checkModelLabels(&running, s.labels); err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	cams, err := buildCameras(cfg.Cameras, s.cfg.Events, s.labels, s.log)
	if err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	if err := s.pipe.Update(cams); err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	if keys := changedKeys(reflect.ValueOf(s.cfg), reflect.ValueOf(cfg), ""); len(keys) > 0 {
		s.log.Warn("reload: only cameras are applied live; restart stardetr to apply the other changes",
			"changed_keys", strings.Join(keys, ", "))
	}
	s.cfg.Cameras = cfg.Cameras
	s.applyRetained()
	s.log.Info("configuration reloaded", "cameras", len(cams))
}

// changedKeys lists the key paths (as written in the file, e.g. mqtt.queue.max_mb) whose
// values differ between two configurations, leaving out `cameras`, which reload applies.
func changedKeys(a, b reflect.Value, prefix string) []string {
	var keys []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" || prefix+tag == "cameras" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, changedKeys(a.Field(i), b.Field(i), key+".")...)
		} else if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}
