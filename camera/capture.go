package camera

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"gocv.io/x/gocv"
)

// This file is the only one that opens, configures and closes OpenCV captures.
// Ownership: a *gocv.VideoCapture belongs to the reader goroutine that opened it; only that
// goroutine reads from it and closes it. cv::VideoCapture is not safe to release while
// another thread is inside read(), so nothing else ever touches it.

// Prop is one capture property and the value requested for it.
type Prop struct {
	ID    gocv.VideoCaptureProperties
	Value float64
}

// V4L2Props returns the properties set on a V4L2 device after it opens, in the order the
// driver needs them: the pixel format first (it decides which sizes exist), then the size,
// then the rate. Zero values are left to the device.
func V4L2Props(c Config) []Prop {
	var p []Prop
	if c.FourCC != "" {
		p = append(p, Prop{gocv.VideoCaptureFOURCC, FourCC(c.FourCC)})
	}
	if c.Width > 0 {
		p = append(p, Prop{gocv.VideoCaptureFrameWidth, float64(c.Width)})
	}
	if c.Height > 0 {
		p = append(p, Prop{gocv.VideoCaptureFrameHeight, float64(c.Height)})
	}
	if c.FPS > 0 {
		p = append(p, Prop{gocv.VideoCaptureFPS, c.FPS})
	}
	return p
}

// FourCC packs a four-character code the way OpenCV's CAP_PROP_FOURCC expects it:
// the first character in the lowest byte.
func FourCC(s string) float64 {
	if len(s) != 4 {
		return 0
	}
	return float64(uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
}

// fourCCString unpacks CAP_PROP_FOURCC; "" when the backend reports none.
func fourCCString(v float64) string {
	u := uint32(v)
	if u == 0 {
		return ""
	}
	b := []byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("0x%08x", u)
		}
	}
	return string(b)
}

// ffmpegParams are the open parameters for the FFmpeg backend: the open timeout, and a read
// timeout equal to the stall timeout, so a silent stream makes read() return instead of
// blocking for FFmpeg's ~30 s default.
func ffmpegParams(c Config) []gocv.VideoCaptureProperties {
	const openTimeoutMsec, readTimeoutMsec = 53, 54 // CAP_PROP_OPEN_TIMEOUT_MSEC, CAP_PROP_READ_TIMEOUT_MSEC
	return []gocv.VideoCaptureProperties{
		openTimeoutMsec, gocv.VideoCaptureProperties(c.OpenTimeout.Milliseconds()),
		readTimeoutMsec, gocv.VideoCaptureProperties(c.StallTimeout.Milliseconds()),
	}
}

// captureInfo is what an opened capture reports about itself.
type captureInfo struct {
	Backend string
	Width   int
	Height  int
	FPS     float64
	FourCC  string
}

// openCapture opens the camera's capture with the backend its URL selects. On error no
// capture is left open.
func openCapture(c Config) (*gocv.VideoCapture, captureInfo, error) {
	var (
		vc  *gocv.VideoCapture
		err error
	)
	switch c.Kind() {
	case KindV4L2:
		if err := checkDevice(c.URL); err != nil {
			return nil, captureInfo{}, err
		}
		vc, err = gocv.VideoCaptureFileWithAPI(c.URL, gocv.VideoCaptureV4L2)
		if err == nil {
			for _, p := range V4L2Props(c) {
				vc.Set(p.ID, p.Value)
			}
		}
		err = openError(err, "V4L2 device %s would not open (busy in another program, or not a capture device?)", c.URL)
	case KindGStreamer:
		vc, err = gocv.VideoCaptureFileWithAPI(strings.TrimSpace(strings.TrimPrefix(c.URL, "gst:")), gocv.VideoCaptureGstreamer)
		err = openError(err, "GStreamer pipeline would not start (run it with gst-launch-1.0, appsink replaced by fakesink, to see why)")
	case KindNetwork:
		vc, err = gocv.VideoCaptureFileWithAPIParams(c.URL, gocv.VideoCaptureFFmpeg, ffmpegParams(c))
		err = openError(err, "stream %s would not open within %v (unreachable, wrong path or credentials, or not a video stream)", redact(c.URL), c.OpenTimeout)
	case KindFile:
		vc, err = gocv.VideoCaptureFileWithAPIParams(c.URL, gocv.VideoCaptureFFmpeg, ffmpegParams(c))
		err = openError(err, "video file %s would not open (missing, unreadable, or a format FFmpeg cannot decode)", c.URL)
	default:
		return nil, captureInfo{}, fmt.Errorf("url %q selects no capture backend", redact(c.URL))
	}
	if err == nil && !vc.IsOpened() {
		err = errors.New("capture reports not opened")
	}
	if err != nil {
		if vc != nil {
			vc.Close()
		}
		return nil, captureInfo{}, err
	}
	info := captureInfo{
		Backend: string(c.Kind()),
		Width:   int(vc.Get(gocv.VideoCaptureFrameWidth)),
		Height:  int(vc.Get(gocv.VideoCaptureFrameHeight)),
		FPS:     vc.Get(gocv.VideoCaptureFPS),
		FourCC:  fourCCString(vc.Get(gocv.VideoCaptureFOURCC)),
	}
	return vc, info, nil
}

func openError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// checkDevice turns the common reasons a V4L2 device cannot open into clear errors before
// OpenCV, whose own message is only "cannot open".
func checkDevice(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("V4L2 device %s does not exist: is the camera plugged in? (ls /dev/video* /dev/v4l/by-id/ lists what is present)", path)
	case err != nil:
		return fmt.Errorf("V4L2 device %s: %w", path, err)
	case st.Mode()&fs.ModeCharDevice == 0:
		return fmt.Errorf("%s is not a character device, so not a V4L2 camera", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("V4L2 device %s: permission denied: add the service user to group %q", path, "video")
	}
	if err != nil {
		return fmt.Errorf("V4L2 device %s: %w", path, err)
	}
	return f.Close()
}
