package camera

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>

// libavutil's log functions, found in the copy OpenCV's FFmpeg backend already loaded: no
// link-time dependency on FFmpeg's headers (the arm64 sysroot has none), and nothing happens
// where OpenCV was built without FFmpeg.
typedef void (*av_log_cb)(void *, int, const char *, va_list);
static void (*p_set_callback)(av_log_cb);
static int (*p_get_level)(void);
static void (*p_format_line)(void *, int, const char *, va_list, char *, int, int *);
static av_log_cb p_default;

static int stardetr_av_bind(void) {
	static const char *names[] = {"libavutil.so.57", "libavutil.so.58", "libavutil.so.59", "libavutil.so.56"};
	if (p_set_callback) return 1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *h = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
		if (!h) continue;
		p_get_level = (int (*)(void))dlsym(h, "av_log_get_level");
		p_format_line = (void (*)(void *, int, const char *, va_list, char *, int, int *))dlsym(h, "av_log_format_line");
		p_default = (av_log_cb)dlsym(h, "av_log_default_callback");
		p_set_callback = (void (*)(av_log_cb))dlsym(h, "av_log_set_callback");
		if (p_set_callback && p_get_level && p_format_line && p_default) return 1;
		p_set_callback = 0;
	}
	return 0;
}

extern void stardetrFFmpegLine(int level, char *line);

// FFmpeg prints a context prefix ("[mjpeg @ 0x…]") only at the start of a line; the flag
// carries that across calls as FFmpeg's own default callback does.
static int stardetr_print_prefix = 1;

static void stardetr_av_log(void *avcl, int level, const char *fmt, va_list vl) {
	if (level > p_get_level()) return;
	char line[1024];
	p_format_line(avcl, level, fmt, vl, line, sizeof line, &stardetr_print_prefix);
	stardetrFFmpegLine(level, line);
}

static int stardetr_capture_av_log(void) {
	if (!stardetr_av_bind()) return 0;
	p_set_callback(stardetr_av_log);
	return 1;
}

static void stardetr_default_av_log(void) {
	if (stardetr_av_bind()) p_set_callback(p_default);
}
*/
import "C"

import (
	"log/slog"
	"strings"
	"sync/atomic"
)

// ffmpegLogger receives FFmpeg's log lines. It is package state because FFmpeg's log callback
// is one per process (av_log_set_callback); CaptureFFmpegLog is its only writer.
var ffmpegLogger atomic.Pointer[slog.Logger]

// CaptureFFmpegLog routes the log lines of FFmpeg inside OpenCV (decoder complaints such as
// "overread 8" or "huffman table decode error" on a damaged frame) to log at debug level,
// instead of FFmpeg's default: raw lines on stderr, outside the service's log format. A nil
// log gives FFmpeg its default back. The lines carry no camera name: FFmpeg's log is per
// process; the camera that skipped a frame logs that itself. It returns false when this
// process has no FFmpeg loaded (OpenCV built without it), where there is nothing to capture.
func CaptureFFmpegLog(log *slog.Logger) bool {
	if log == nil {
		ffmpegLogger.Store(nil)
		C.stardetr_default_av_log()
		return true
	}
	ffmpegLogger.Store(log.With("component", "ffmpeg"))
	return C.stardetr_capture_av_log() == 1
}

//export stardetrFFmpegLine
func stardetrFFmpegLine(level C.int, line *C.char) {
	log := ffmpegLogger.Load()
	if log == nil {
		return
	}
	msg := strings.TrimSpace(C.GoString(line))
	if msg == "" {
		return
	}
	log.Debug("ffmpeg says", "av_level", int(level), "line", msg)
}
