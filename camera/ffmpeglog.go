package camera

/*
#cgo pkg-config: libavutil
#include <stdarg.h>
#include <libavutil/log.h>

extern void stardetrFFmpegLine(int level, char *line);

// FFmpeg prints a context prefix ("[mjpeg @ 0x…]") only at the start of a line; the flag
// carries that across calls as FFmpeg's own default callback does.
static int stardetr_print_prefix = 1;

static void stardetr_av_log(void *avcl, int level, const char *fmt, va_list vl) {
	if (level > av_log_get_level()) return;
	char line[1024];
	av_log_format_line(avcl, level, fmt, vl, line, sizeof line, &stardetr_print_prefix);
	stardetrFFmpegLine(level, line);
}

static void stardetr_capture_av_log(void) { av_log_set_callback(stardetr_av_log); }
static void stardetr_default_av_log(void) { av_log_set_callback(av_log_default_callback); }
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
// process; the camera that skipped a frame logs that itself.
func CaptureFFmpegLog(log *slog.Logger) {
	if log == nil {
		ffmpegLogger.Store(nil)
		C.stardetr_default_av_log()
		return
	}
	ffmpegLogger.Store(log.With("component", "ffmpeg"))
	C.stardetr_capture_av_log()
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
