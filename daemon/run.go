package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/stardetr/stardetr/camera"
)

// stopTimeout bounds a clean shutdown after SIGTERM: the README promises an exit within 5 s
// (systemd's default TimeoutStopSec is 90 s); 4 s leaves a second for the process to exit.
const stopTimeout = 4 * time.Second

// cmdRun runs the service until SIGTERM/SIGINT (stardetr run); SIGHUP reloads the cameras.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", DefaultConfigPath, "configuration file (YAML)")
	logLevel := fs.String("log-level", "", "override log_level: debug, info, warn or error")
	if code, ok := parseCommand(fs, args, stderr, "[--config F]"); !ok {
		return code
	}
	cfg, err := loadAndValidate(*path, func(c *Config) {
		if *logLevel != "" {
			c.LogLevel = *logLevel
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "stardetr run: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "stardetr run: config %s: log_level: %v\n", *path, err)
		return exitUsage
	}
	if !camera.CaptureFFmpegLog(log) {
		log.Debug("no FFmpeg in this process (OpenCV without it): its log is not captured")
	}
	defer camera.CaptureFFmpegLog(nil)
	s, err := startService(ctx, cfg, *path, log)
	if err != nil {
		log.Error("not started", "err", err)
		return exitFailure
	}
	return s.wait(ctx)
}

// newLogger is the service's logger at the configured log_level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	l, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
