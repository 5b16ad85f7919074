package camera

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
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

// Validate checks the camera: every problem, each naming its key within the camera
// (confcheck). A missing V4L2 device is not an error here: USB cameras come and go, and the
// source reports "device not present" and retries. A missing video file is an error.
func (c *Config) Validate() error {
	var l confcheck.List
	switch {
	case c.Name == "":
		l.Add("name", "is empty: every camera needs a name (letters, digits, '_', '-', '.')")
	case !namePattern.MatchString(c.Name):
		l.Add("name", "%q: use letters, digits, '_', '-' and '.' only, starting with a letter or digit (it becomes an MQTT topic level)", c.Name)
	}
	kind, err := KindOf(c.URL)
	if err == nil {
		err = validateURL(kind, c.URL)
	}
	if err != nil {
		l.Add("url", "%v", err)
	}
	for _, d := range []struct {
		key string
		v   int
	}{{"width", c.Width}, {"height", c.Height}} {
		if d.v < 0 {
			l.Add(d.key, "%d: must be >= 0 (0 = the device's default)", d.v)
		} else if d.v != 0 && kind != KindV4L2 && kind != "" {
			l.Add(d.key, "applies to V4L2 devices (/dev/video*) only; for %s sources leave it unset (gst: set caps in the pipeline)", kind)
		}
	}
	switch {
	case c.FourCC != "" && kind != KindV4L2 && kind != "":
		l.Add("fourcc", "applies to V4L2 devices (/dev/video*) only; for %s sources leave it unset (gst: set caps in the pipeline)", kind)
	case c.FourCC != "" && !fourccChars.MatchString(c.FourCC):
		l.Add("fourcc", "%q: must be 4 letters or digits, e.g. MJPG or YUYV", c.FourCC)
	}
	switch {
	case math.IsNaN(c.FPS) || math.IsInf(c.FPS, 0) || c.FPS < 0 || c.FPS > 1000:
		l.Add("fps", "%v is out of range: 0 to 1000 (0 = the source's own rate)", c.FPS)
	case c.FPS != 0 && kind != KindV4L2 && kind != KindFile && kind != "":
		l.Add("fps", "applies to V4L2 devices and files only; a %s source delivers its own rate", kind)
	case kind == KindV4L2 && c.FPS > 0 && c.StallTimeout > 0 && time.Duration(float64(time.Second)/c.FPS) >= c.StallTimeout:
		l.Add("fps", "%v means a frame every %v, not less than stall_timeout %v: raise stall_timeout", c.FPS,
			time.Duration(float64(time.Second)/c.FPS), c.StallTimeout)
	}
	if c.Pace != PaceRealtime && c.Pace != PaceFast {
		l.Add("pace", "%q: must be %q or %q", c.Pace, PaceRealtime, PaceFast)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		def time.Duration
	}{{"stall_timeout", c.StallTimeout, DefaultStallTimeout}, {"open_timeout", c.OpenTimeout, DefaultOpenTimeout}} {
		if d.v < 100*time.Millisecond || d.v > time.Hour {
			l.Add(d.key, "%v is out of range: 100ms to 1h (default %v)", d.v, d.def)
		}
	}
	return l.Err()
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
