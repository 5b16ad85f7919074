package camera

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Kind is the capture backend a camera URL selects.
type Kind string

const (
	// KindV4L2 is a local video device, /dev/videoN or a stable /dev/v4l/by-id/… link.
	KindV4L2 Kind = "v4l2"
	// KindNetwork is an rtsp://, rtsps://, http:// or https:// stream read through FFmpeg.
	KindNetwork Kind = "network"
	// KindGStreamer is a GStreamer pipeline given as "gst:<pipeline>" ending in appsink.
	KindGStreamer Kind = "gstreamer"
	// KindFile is a video file read through FFmpeg.
	KindFile Kind = "file"
)

// Pace values for file sources.
const (
	// PaceRealtime delivers a file's frames at its own frame rate (or fps when set).
	PaceRealtime = "realtime"
	// PaceFast delivers a file's frames as fast as they decode.
	PaceFast = "fast"
)

// Defaults used by DefaultConfig and for zero values at Validate.
const (
	DefaultStallTimeout = 5 * time.Second
	DefaultOpenTimeout  = 10 * time.Second
)

// Config is one camera. The mapstructure tags are the YAML keys; the struct decodes as a
// squashed part of a larger per-camera section (the daemon adds its own keys next to these).
type Config struct {
	// Name identifies the camera in logs, states and MQTT topics.
	Name string `mapstructure:"name"`
	// URL is /dev/videoN (or /dev/v4l/…), rtsp[s]://…, http[s]://… (MJPEG), gst:<pipeline>
	// or a video file path.
	URL string `mapstructure:"url"`
	// Width, Height, FPS and FourCC are requested from a V4L2 device; 0 or "" leave the
	// device's choice. FPS also overrides a file's own rate for realtime pacing.
	Width  int     `mapstructure:"width"`
	Height int     `mapstructure:"height"`
	FPS    float64 `mapstructure:"fps"`
	FourCC string  `mapstructure:"fourcc"`
	// Loop restarts a file at its end; without it Run returns ErrEndOfFile there.
	Loop bool `mapstructure:"loop"`
	// Pace is "realtime" (a file's own frame rate) or "fast" (as fast as it decodes).
	Pace string `mapstructure:"pace"`
	// StallTimeout: no frame for this long means the source is reopened.
	StallTimeout time.Duration `mapstructure:"stall_timeout"`
	// OpenTimeout bounds opening a network stream (FFmpeg's open timeout).
	OpenTimeout time.Duration `mapstructure:"open_timeout"`
}

// DefaultConfig returns a Config with every default filled in; Name and URL are empty.
func DefaultConfig() Config {
	return Config{
		Loop:         true,
		Pace:         PaceRealtime,
		StallTimeout: DefaultStallTimeout,
		OpenTimeout:  DefaultOpenTimeout,
	}
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	fourccChars = regexp.MustCompile(`^[0-9A-Za-z ]{4}$`)
)

// schemes accepted in a camera URL, for messages.
const acceptedURLs = "/dev/videoN, rtsp://, rtsps://, http://, https://, gst:<pipeline> or a video file path"

// KindOf tells which backend a URL selects, or why it selects none.
func KindOf(u string) (Kind, error) {
	switch {
	case u == "":
		return "", fmt.Errorf("is empty: set it to %s", acceptedURLs)
	case strings.HasPrefix(u, "gst:"):
		return KindGStreamer, nil
	case strings.HasPrefix(u, "/dev/"):
		return KindV4L2, nil
	}
	if i := strings.Index(u, "://"); i >= 0 {
		switch scheme := strings.ToLower(u[:i]); scheme {
		case "rtsp", "rtsps", "http", "https":
			return KindNetwork, nil
		default:
			return "", fmt.Errorf("%q: unknown scheme %q: use %s", u, scheme, acceptedURLs)
		}
	}
	return KindFile, nil
}

// Kind returns the backend the URL selects (empty when the URL is invalid).
func (c *Config) Kind() Kind {
	k, _ := KindOf(c.URL)
	return k
}

// Validate checks the camera and fills zero durations and an empty pace with their defaults.
// path prefixes every message with the camera's key path, e.g. "cameras[1]".
// A missing V4L2 device is not an error here: USB cameras come and go, and the source
// reports "device not present" and retries. A missing video file is an error.
func (c *Config) Validate(path string) error {
	key := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	if c.Name == "" {
		return fmt.Errorf("%s: is empty: every camera needs a name (letters, digits, '_', '-', '.')", key("name"))
	}
	if !namePattern.MatchString(c.Name) {
		return fmt.Errorf("%s: %q: use letters, digits, '_', '-' and '.' only, starting with a letter or digit (it becomes an MQTT topic level)", key("name"), c.Name)
	}
	kind, err := KindOf(c.URL)
	if err != nil {
		return fmt.Errorf("%s: %w", key("url"), err)
	}
	if err := validateURL(kind, c.URL); err != nil {
		return fmt.Errorf("%s: %w", key("url"), err)
	}
	if c.Width < 0 || c.Height < 0 {
		k, v := key("width"), c.Width
		if c.Height < 0 {
			k, v = key("height"), c.Height
		}
		return fmt.Errorf("%s: %d: must be >= 0 (0 = the device's default)", k, v)
	}
	if (c.Width != 0 || c.Height != 0 || c.FourCC != "") && kind != KindV4L2 {
		k := key("width")
		if c.Width == 0 && c.Height != 0 {
			k = key("height")
		} else if c.Width == 0 {
			k = key("fourcc")
		}
		return fmt.Errorf("%s: applies to V4L2 devices (/dev/video*) only; for %s sources leave it unset (gst: set caps in the pipeline)", k, kind)
	}
	if c.FourCC != "" && !fourccChars.MatchString(c.FourCC) {
		return fmt.Errorf("%s: %q: must be 4 letters or digits, e.g. MJPG or YUYV", key("fourcc"), c.FourCC)
	}
	if math.IsNaN(c.FPS) || math.IsInf(c.FPS, 0) || c.FPS < 0 || c.FPS > 1000 {
		return fmt.Errorf("%s: %v: must be between 0 and 1000 (0 = the source's own rate)", key("fps"), c.FPS)
	}
	if c.FPS != 0 && kind != KindV4L2 && kind != KindFile {
		return fmt.Errorf("%s: applies to V4L2 devices and files only; a %s source delivers its own rate", key("fps"), kind)
	}
	if kind == KindV4L2 && c.FPS > 0 && c.StallTimeout > 0 && time.Duration(float64(time.Second)/c.FPS) >= c.StallTimeout {
		return fmt.Errorf("%s: %v means a frame every %v, not less than stall_timeout %v: raise stall_timeout", key("fps"), c.FPS,
			time.Duration(float64(time.Second)/c.FPS), c.StallTimeout)
	}
	switch c.Pace {
	case "":
		c.Pace = PaceRealtime
	case PaceRealtime, PaceFast:
	default:
		return fmt.Errorf("%s: %q: must be %q or %q", key("pace"), c.Pace, PaceRealtime, PaceFast)
	}
	for _, d := range []struct {
		k   string
		v   *time.Duration
		def time.Duration
	}{{"stall_timeout", &c.StallTimeout, DefaultStallTimeout}, {"open_timeout", &c.OpenTimeout, DefaultOpenTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 100*time.Millisecond || *d.v > time.Hour:
			return fmt.Errorf("%s: %v: must be between 100ms and 1h (default %v)", key(d.k), *d.v, d.def)
		}
	}
	return nil
}

func validateURL(kind Kind, u string) error {
	switch kind {
	case KindGStreamer:
		p := strings.TrimSpace(strings.TrimPrefix(u, "gst:"))
		if p == "" {
			return fmt.Errorf("%q: the pipeline after gst: is empty, e.g. gst:videotestsrc ! videoconvert ! appsink", u)
		}
		if !strings.Contains(p, "appsink") {
			return fmt.Errorf("%q: a GStreamer pipeline must end in appsink (… ! videoconvert ! video/x-raw,format=BGR ! appsink)", u)
		}
	case KindV4L2:
		if len(u) <= len("/dev/") || strings.HasSuffix(u, "/") {
			return fmt.Errorf("%q: names no device: use /dev/videoN or a /dev/v4l/by-id/… link", u)
		}
	case KindNetwork:
		pu, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("%q: malformed URL: %v", redact(u), unwrapURLError(err))
		}
		if pu.Hostname() == "" {
			return fmt.Errorf("%q: has no host, e.g. rtsp://user:pass@10.0.0.5:554/stream", redact(u))
		}
		if p := pu.Port(); p != "" {
			var n int
			if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%q: port %q must be 1..65535", redact(u), p)
			}
		}
	case KindFile:
		st, err := os.Stat(u)
		if err != nil {
			return fmt.Errorf("%q: video file not found (%v): give an existing file, or a URL of the form %s", u, unwrapPathError(err), acceptedURLs)
		}
		if st.IsDir() {
			return fmt.Errorf("%q: is a directory, not a video file", u)
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// redact hides a password in a URL for logs and messages.
func redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.User == nil {
		// Unparseable: hide everything between "://" and the last '@', where credentials live.
		if i, j := strings.Index(u, "://"), strings.LastIndex(u, "@"); i >= 0 && j > i {
			return u[:i+3] + "***@" + u[j+1:]
		}
		return u
	}
	if _, has := pu.User.Password(); has {
		pu.User = url.UserPassword(pu.User.Username(), "***")
	}
	return pu.String()
}
