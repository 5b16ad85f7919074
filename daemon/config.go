package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/imgsize"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/motion"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/track"
)

// DefaultConfigPath is where the package installs the configuration.
const DefaultConfigPath = "/etc/stardetr/config.yaml"

// EnvPrefix prefixes environment overrides: STARDETR_MODEL_THREADS=2 sets model.threads.
const EnvPrefix = "STARDETR"

// Config is the whole configuration file. Each library owns its section's type, defaults
// and validation; this struct only composes them.
type Config struct {
	// DeviceID names this box in MQTT topics; empty: the hostname.
	DeviceID string `mapstructure:"device_id"`
	// StateDir holds the TensorRT engine cache, the MQTT queue and the message counters.
	StateDir string `mapstructure:"state_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// Model is the detector.
	Model model.Config `mapstructure:"model"`
	// Cameras are the sources, each with its publish policy.
	Cameras []CameraConfig `mapstructure:"cameras"`
	// MQTT is the broker connection and the offline queue.
	MQTT publish.Config `mapstructure:"mqtt"`
	// HTTP serves the live view and the API: the endpoints of the route table in http.go.
	HTTP HTTPConfig `mapstructure:"http"`
	// Watchdog bounds one frame's processing: past it the pipeline counts as stuck, the
	// systemd watchdog pings stop and /healthz fails.
	Watchdog WatchdogConfig `mapstructure:"watchdog"`
	// Events are the tracking cameras' event settings.
	Events EventsConfig `mapstructure:"events"`
	// HomeAssistant publishes MQTT discovery for the cameras' zone counts.
	HomeAssistant HomeAssistantConfig `mapstructure:"homeassistant"`
}

// CameraConfig is one entry of `cameras:`: the camera's own keys plus its publish policy.
type CameraConfig struct {
	camera.Config `mapstructure:",squash"`
	Publish       pipeline.Policy `mapstructure:"publish"`
	// Track turns on tracking, zones and events for the camera.
	Track track.Config `mapstructure:"track"`
	// Zones are polygons whose objects are counted and reported in events.
	Zones track.Zones `mapstructure:"zones"`
	// Detect chooses the frames the model runs on: always, or when something moves.
	Detect pipeline.Detect `mapstructure:"detect"`
	// Motion is the motion detector of a camera in detect mode motion.
	Motion motion.Config `mapstructure:"motion"`
	// Objects drops detections by label before tracking and publishing.
	Objects pipeline.Objects `mapstructure:"objects"`
}

// WatchdogConfig is the `watchdog:` section.
type WatchdogConfig struct {
	// FrameTimeout is the longest one frame may spend in the pipeline before it counts as stuck.
	FrameTimeout time.Duration `mapstructure:"frame_timeout"`
	// RetryBudget is how long a camera may retry before /healthz reports it unhealthy.
	RetryBudget time.Duration `mapstructure:"retry_budget"`
}

// DefaultConfig returns every default of the configuration; cameras get theirs when decoded.
func DefaultConfig() Config {
	return Config{
		StateDir:      "/var/lib/stardetr",
		LogLevel:      "info",
		Model:         model.DefaultConfig(),
		MQTT:          publish.DefaultConfig(),
		HTTP:          HTTPConfig{Listen: "127.0.0.1:9110", MaxViewers: 4, MaxConnections: 64},
		Watchdog:      WatchdogConfig{FrameTimeout: 30 * time.Second, RetryBudget: 5 * time.Minute},
		Events:        DefaultEventsConfig(),
		HomeAssistant: HomeAssistantConfig{Prefix: "homeassistant"},
	}
}

func defaultCamera() CameraConfig {
	return CameraConfig{Config: camera.DefaultConfig(), Publish: pipeline.DefaultPolicy(), Track: track.DefaultConfig(),
		Detect: pipeline.DefaultDetect(), Motion: motion.DefaultConfig()}
}

// LoadConfig reads the YAML file at path, applies STARDETR_* environment overrides, fills the
// defaults and resolves relative paths against the file's folder. It rejects unknown keys;
// it does not validate values (see Validate).
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return cfg, fmt.Errorf("config %s: %w: give an existing file with --config", path, pe.Err)
		}
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, key := range scalarKeys(reflect.TypeOf(cfg), "") {
		if err := v.BindEnv(key); err != nil {
			return cfg, fmt.Errorf("config: bind environment for %s: %w", key, err)
		}
	}
	// Cameras are a list: each element starts from the camera defaults, then the file's keys.
	if raw, ok := v.Get("cameras").([]any); ok {
		cfg.Cameras = make([]CameraConfig, len(raw))
		for i := range cfg.Cameras {
			cfg.Cameras[i] = defaultCamera()
			// Zones are a list too: each starts from the zone defaults.
			if cam, ok := raw[i].(map[string]any); ok {
				if zs, ok := cam["zones"].([]any); ok {
					cfg.Cameras[i].Zones = make(track.Zones, len(zs))
					for j := range zs {
						cfg.Cameras[i].Zones[j] = track.DefaultZone()
					}
				}
			}
		}
	}
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true })
	if err != nil {
		return cfg, fmt.Errorf("config %s: %s", path, describeDecodeError(err))
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
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

// parseLogLevel reads a log_level (or --log-level) value; Validate and newLogger both use it,
// so that the levels the config accepts are the ones the logger knows.
func parseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a level: use debug, info, warn or error", s)
}

// scalarKeys lists the dotted keys of every field an environment variable can hold: scalars,
// durations, and lists of scalars (comma-separated). Maps (model.names) and lists of sections
// (cameras) have no environment form.
func scalarKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		switch f.Type.Kind() {
		case reflect.Struct:
			if f.Type == reflect.TypeOf(time.Duration(0)) {
				keys = append(keys, key)
			} else {
				keys = append(keys, scalarKeys(f.Type, key+".")...)
			}
		case reflect.Map:
		case reflect.Slice:
			if k := f.Type.Elem().Kind(); k != reflect.Struct && k != reflect.Map && k != reflect.Slice {
				keys = append(keys, key) // a comma-separated list in the environment
			}
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// describeDecodeError turns mapstructure's errors into one line per problem, each naming the key.
func describeDecodeError(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "decoding failed due to the following error(s):\n\n", "")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		if l == "" {
			continue
		}
		if strings.Contains(l, "has invalid keys:") {
			l += " (unknown key: check its spelling and indentation against the README's configuration section)"
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "; ")
}

// resolvePaths makes relative file paths relative to the config file's folder.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.StateDir)
	abs(&c.Model.Path)
	abs(&c.Model.Plugin)
	abs(&c.Model.ONNXRuntime)
	abs(&c.Model.TensorRT.CacheDir)
	abs(&c.Model.TensorRT.Plugin)
	abs(&c.MQTT.PasswordFile)
	abs(&c.MQTT.TLS.CA)
	abs(&c.MQTT.TLS.Cert)
	abs(&c.MQTT.TLS.Key)
	abs(&c.HTTP.Auth.PasswordFile)
	for i := range c.Cameras {
		u := c.Cameras[i].URL
		if isFilePath(u) {
			abs(&c.Cameras[i].URL)
		}
	}
}

// isFilePath reports whether a camera URL names a video file (not a device, URL or pipeline).
func isFilePath(u string) bool {
	k, err := camera.KindOf(u)
	return err == nil && k == camera.KindFile
}

// Validate checks every section and returns all problems at once, each naming its full key.
func (c *Config) Validate() error {
	var l confcheck.List
	if c.StateDir == "" {
		l.Add("state_dir", "required: a writable folder for the queue and caches")
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		l.Add("log_level", "%v", err)
	}
	l.Include("model", c.Model.Validate())
	if len(c.Cameras) == 0 {
		l.Add("cameras", "none configured: add at least one camera with a name and a url")
	}
	names := map[string]int{}
	camErrs, zoneErrs := make([]error, len(c.Cameras)), make([]error, len(c.Cameras))
	for i := range c.Cameras {
		cam := &c.Cameras[i]
		path := fmt.Sprintf("cameras[%d]", i)
		camErrs[i], zoneErrs[i] = cam.Config.Validate(), cam.Zones.Validate()
		l.Include(path, camErrs[i])
		if !hasProblem(camErrs[i], "url") {
			checkStillImage(&l, path+".url", cam.Config)
		}
		l.Include(path+".publish", cam.Publish.Validate())
		l.Include(path+".track", cam.Track.Validate())
		l.Include(path, zoneErrs[i])
		l.Include(path+".detect", cam.Detect.Validate())
		l.Include(path+".motion", cam.Motion.Validate())
		l.Include(path+".objects", cam.Objects.Validate())
		if len(cam.Zones) > 0 && !cam.Track.Enabled {
			l.Add(path+".zones", "need tracking: set %s.track.enabled: true", path)
		}
		if j, dup := names[cam.Name]; dup && cam.Name != "" {
			l.Add(path+".name", "%q is already the name of cameras[%d]: names must be unique", cam.Name, j)
		}
		names[cam.Name] = i
	}
	c.checkTopicNames(&l, camErrs, zoneErrs)
	l.Include("mqtt", c.MQTT.Validate())
	l.Include("http", c.HTTP.Validate())
	l.Include("events", c.Events.Validate())
	l.Include("homeassistant", c.HomeAssistant.Validate())
	if c.Watchdog.FrameTimeout < time.Second {
		l.Add("watchdog.frame_timeout", "%s is too short: use at least 1s", c.Watchdog.FrameTimeout)
	}
	if c.Watchdog.RetryBudget < 0 {
		l.Add("watchdog.retry_budget", "%s is negative", c.Watchdog.RetryBudget)
	}
	return l.Err()
}

// checkStillImage applies the pixel cap of `stardetr infer` and `eval` to a camera whose file
// is a still picture (FFmpeg reads PNG, JPEG, BMP… as a one-frame video): its header is read,
// and a picture above imgsize.DefaultMaxPixels refused before FFmpeg decodes it. Files of
// other formats (videos) and files that are not regular (a named pipe fed by another program)
// are the camera's business.
func checkStillImage(l *confcheck.List, key string, cam camera.Config) {
	if cam.Kind() != camera.KindFile {
		return
	}
	var tooLarge *imgsize.TooLargeError
	if _, err := imgsize.Check(cam.URL, imgsize.DefaultMaxPixels); errors.As(err, &tooLarge) {
		l.Add(key, "%v", err)
	}
}

// deviceID returns the configured device id or the hostname.
func (c *Config) deviceID() (string, error) {
	if c.DeviceID != "" {
		return c.DeviceID, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("device_id: empty and the hostname is unreadable (%v): set device_id", err)
	}
	return strings.NewReplacer("+", "_", "#", "_", "/", "_", " ", "_").Replace(h), nil
}
