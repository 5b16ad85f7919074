// Package camera captures frames from V4L2 devices, network streams, GStreamer pipelines and
// video files through OpenCV, each source in its own reconnect loop with a stall watchdog.
// Frames come from a small fixed pool per source and go back to it on Release.
//
// Configuration (entries of the daemon's cameras list; the keys are Config's):
//
//	cameras:
//	- name: front
//	  url: rtsp://user:pass@10.0.0.5/stream   # FFmpeg; RTSP tries TCP first (see below)
//	- name: usb
//	  url: /dev/video0                        # V4L2; or /dev/v4l/by-id/… for a stable name
//	  width: 1280
//	  height: 720
//	  fps: 30
//	  fourcc: MJPG
//	- name: csi
//	  url: "gst:nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
//	- name: demo
//	  url: /usr/share/stardetr/demo.mp4
//	  loop: true          # default
//	  pace: realtime      # default; fast = as fast as it decodes
//	  stall_timeout: 5s   # default: no frame for this long -> reopen
//	  open_timeout: 10s   # default: FFmpeg open timeout for streams and files
//
// RTSP transport: OpenCV's FFmpeg backend asks for RTP over TCP first (rtsp_flags=prefer_tcp)
// unless the environment variable OPENCV_FFMPEG_CAPTURE_OPTIONS is set; to force TCP only,
// set OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp" in the service's environment.
package camera

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/backoff"
)

// Phase is where a source is in its connect/stream/retry cycle.
type Phase string

const (
	PhaseConnecting Phase = "connecting" // opening the capture, or opened and waiting for the first frame
	PhaseStreaming  Phase = "streaming"  // frames arrive
	PhaseRetrying   Phase = "retrying"   // the last attempt failed; the next one starts at NextRetry
	PhaseStopped    Phase = "stopped"    // Run has returned (or not started)
)

// State is a snapshot of a source, safe to take from any goroutine.
type State struct {
	Phase Phase
	// LastError is the most recent failure; it stays after the source recovers.
	LastError string
	// Since is when Phase was entered.
	Since time.Time
	// NextRetry is when the next attempt starts (PhaseRetrying only).
	NextRetry time.Time
	// Reconnects counts attempts after the first one (reopens after a failure or stall).
	Reconnects uint64
	// Frames counts frames read, dropped ones included; it equals the last Frame.Seq.
	Frames uint64
	// Drops counts frames read while the consumer held every pooled frame.
	Drops uint64
	// Undecodable counts frames skipped because they failed to decode (a corrupt JPEG part
	// of an MJPEG stream, a damaged packet) while the stream went on.
	Undecodable uint64
	// Width, Height, FPS and FourCC are what the open capture reports (0/"" if unknown).
	Width, Height int
	FPS           float64
	FourCC        string
}

var (
	// ErrEndOfFile is returned by Run when a file source without loop reaches its end.
	ErrEndOfFile = errors.New("camera: end of file reached and loop is off")
	// ErrRunning is returned by Run when the source is already running.
	ErrRunning = errors.New("camera: Run called on a source that is already running")
)

// Source is one camera. Create it with NewSource, drive it with Run.
type Source struct {
	cfg   Config
	kind  Kind
	log   *slog.Logger
	steps []time.Duration
	// resetAfter: a session that streamed this long starts the retry schedule over.
	resetAfter time.Duration

	running atomic.Bool
	frames  atomic.Uint64 // also the frame sequence
	drops   atomic.Uint64
	corrupt atomic.Uint64

	mu      sync.Mutex
	st      State
	session uint64 // the attempt allowed to write st; guards against a stale reader
}

// NewSource validates cfg and returns a stopped source. log may be nil (no logging).
func NewSource(cfg Config, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("camera %q: %w", cfg.Name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:        cfg,
		kind:       cfg.Kind(),
		log:        log.With("component", "camera", "camera", cfg.Name),
		steps:      backoff.Default,
		resetAfter: backoff.ResetAfter,
	}
	s.st = State{Phase: PhaseStopped, Since: time.Now()}
	return s, nil
}

// State returns a snapshot of the source.
func (s *Source) State() State {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.Frames = s.frames.Load()
	st.Drops = s.drops.Load()
	st.Undecodable = s.corrupt.Load()
	return st
}

// update changes the state if session is still the current attempt (0 = unconditionally).
func (s *Source) update(session uint64, fn func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if session != 0 && session != s.session {
		return
	}
	fn(&s.st)
}

func (s *Source) setPhase(session uint64, p Phase, lastErr error, next time.Time) {
	s.update(session, func(st *State) {
		if st.Phase != p {
			st.Phase, st.Since = p, time.Now()
		}
		if lastErr != nil {
			st.LastError = lastErr.Error()
		}
		st.NextRetry = next
	})
}

// finish marks the source stopped and ends the current attempt's right to change the state,
// so a reader left behind cannot report itself streaming afterwards.
func (s *Source) finish(lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.session++
	s.st.Phase, s.st.Since, s.st.NextRetry = PhaseStopped, time.Now(), time.Time{}
	if lastErr != nil {
		s.st.LastError = lastErr.Error()
	}
}

// Run captures until ctx is done, calling sink with each frame from the capture goroutine.
// sink owns each frame it receives and must Release it; it must return quickly (hand the
// frame off, do not process it there), because the next read waits for it. Failures never
// end Run: the source reopens with a stepped backoff (1s, 1s, 2s, 5s, 10s, 20s, then 30s,
// ±20%), and reopens a source that delivered no frame for StallTimeout. Run returns nil when
// ctx is done, ErrEndOfFile when a file without loop ends, and an error when a read or open
// stays blocked inside OpenCV for 3 s after ctx is done (the capture goroutine is then left
// to finish on its own; it closes its capture and frames when OpenCV returns).
// Frames still held when Run returns stay valid until released.
func (s *Source) Run(ctx context.Context, sink func(*Frame)) error {
	if sink == nil {
		return fmt.Errorf("camera %q: Run needs a sink", s.cfg.Name)
	}
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	pool := NewFramePool(FramePoolSize, s.cfg.Name)
	defer pool.Close()
	h := fnv.New64a()
	h.Write([]byte(s.cfg.Name))
	bo := backoff.New(s.steps, s.resetAfter, h.Sum64()^uint64(time.Now().UnixNano()))

	for retried := false; ; {
		s.mu.Lock()
		s.session++
		session := s.session
		if retried {
			s.st.Reconnects++
		}
		s.mu.Unlock()
		retried = false
		s.setPhase(session, PhaseConnecting, nil, time.Time{})

		res := s.attempt(ctx, session, pool, sink)
		switch {
		case res.abandoned:
			s.finish(res.err)
			return fmt.Errorf("camera %q: %w", s.cfg.Name, res.err)
		case ctx.Err() != nil:
			s.finish(nil)
			return nil
		case res.eof && !s.cfg.Loop:
			s.finish(nil)
			s.log.Info("camera file ended", "frames", res.frames)
			return ErrEndOfFile
		case res.eof && res.frames > 0:
			// A looping file that would not seek back: reopen at once, it is not a failure.
			continue
		case res.eof:
			res.err = errors.New("video file ended before its first frame (empty or unreadable)")
		}
		var streamed time.Duration // how long the session worked: first to last frame
		if res.frames > 0 {
			streamed = res.last.Sub(res.first)
		}
		wait, _ := bo.After(streamed)
		s.setPhase(session, PhaseRetrying, res.err, time.Now().Add(wait))
		s.log.Warn("camera failed, retrying", "err", res.err, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Wait(ctx, wait) {
			s.finish(nil)
			return nil
		}
		retried = true
	}
}

// shutdownGrace is how long Run waits, once ctx is done, for a read or open in progress to
// return. FFmpeg bounds those by the read and open timeouts; GStreamer and V4L2 reads can
// block longer. cv::VideoCapture cannot be released while a read is inside it, so closing
// the capture from another goroutine to unblock it would be a use-after-free.
const shutdownGrace = 3 * time.Second

// attemptResult is how one open-and-read session ended.
type attemptResult struct {
	err         error
	eof         bool
	frames      uint64
	first, last time.Time
	abandoned   bool
}

// attempt runs one session: a reader goroutine opens the capture and reads until it fails,
// the watchdog sees no frame for StallTimeout, or ctx is done. The reader is the only
// goroutine that touches the capture, so stopping it means asking and waiting for the read
// in progress to return (FFmpeg's read timeout bounds that wait for files and streams).
func (s *Source) attempt(ctx context.Context, session uint64, pool *FramePool, sink func(*Frame)) attemptResult {
	stop := make(chan struct{})
	done := make(chan attemptResult, 1)
	var progress atomic.Int64 // UnixNano of the last sign of life; the open gets OpenTimeout extra
	progress.Store(time.Now().Add(s.cfg.OpenTimeout).UnixNano())
	go func() { done <- s.read(session, stop, pool, sink, &progress) }()

	// wait waits for the reader after stop. A stalled reader is waited for as long as it
	// takes (until ctx is done): reopening while it still holds the device would fail anyway.
	// After ctx is done it gets shutdownGrace, then is left behind: it still closes its own
	// capture and frames when OpenCV returns, but shutdown does not wait for that.
	wait := func(cause error) attemptResult {
		select {
		case r := <-done:
			if cause != nil {
				r.err = cause
			}
			return r
		case <-ctx.Done():
		}
		t := time.NewTimer(shutdownGrace)
		defer t.Stop()
		select {
		case r := <-done:
			return r
		case <-t.C:
			s.log.Error("camera capture still blocked inside OpenCV after stop; leaving it behind", "waited", shutdownGrace)
			return attemptResult{err: fmt.Errorf("capture blocked inside OpenCV for %v after stop", shutdownGrace), abandoned: true}
		}
	}

	// The watchdog fires StallTimeout after the last sign of life; while the open's extra
	// allowance puts that in the future it checks every StallTimeout.
	watchdog := time.NewTimer(s.cfg.StallTimeout)
	defer watchdog.Stop()
	for {
		select {
		case r := <-done:
			return r
		case <-ctx.Done():
			close(stop)
			return wait(nil)
		case <-watchdog.C:
			idle := time.Since(time.Unix(0, progress.Load()))
			if idle < s.cfg.StallTimeout {
				watchdog.Reset(min(s.cfg.StallTimeout-idle, s.cfg.StallTimeout))
				continue
			}
			close(stop)
			err := fmt.Errorf("stalled: no frame for %v", s.cfg.StallTimeout)
			s.setPhase(session, PhaseRetrying, err, time.Time{})
			s.log.Warn("camera stalled, reopening", "no_frame_for", s.cfg.StallTimeout)
			r := wait(err)
			r.eof = false
			return r
		}
	}
}

// read is the capture goroutine of one attempt: it owns the capture and one scratch Mat.
func (s *Source) read(session uint64, stop <-chan struct{}, pool *FramePool, sink func(*Frame), progress *atomic.Int64) (r attemptResult) {
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	vc, info, err := openCapture(s.cfg)
	if err != nil {
		r.err = err
		return r
	}
	defer vc.Close()
	if stopped() {
		return r
	}
	progress.Store(time.Now().UnixNano())
	s.opened(session, info)

	scratch := gocv.NewMat()
	defer scratch.Close()
	pace := s.newPacer(info.FPS)
	defer pace.stop()
	rd := reading{lastGood: time.Now()}
	for !stopped() {
		f := pool.Get()
		dst := &scratch
		if f != nil {
			dst = &f.Mat
		}
		ok := vc.Read(dst) && !dst.Empty()
		now := time.Now()
		if !ok || stopped() {
			if f != nil {
				f.Release()
			}
			if ok || stopped() || !s.failedRead(vc, &rd, &r, now) {
				return r
			}
			continue
		}
		seq := s.goodRead(session, &rd, &r, now, progress)
		if f == nil {
			s.drops.Add(1) // the consumer holds every pooled frame: this one is read into scratch and dropped
		} else {
			f.Seq, f.Time = seq, now
			sink(f)
		}
		if !pace.wait(stop, progress) {
			return r
		}
	}
	return r
}

// opened records and logs what the capture opened.
func (s *Source) opened(session uint64, info captureInfo) {
	s.update(session, func(st *State) {
		st.Width, st.Height, st.FPS, st.FourCC = info.Width, info.Height, info.FPS, info.FourCC
	})
	s.log.Info("camera opened", "backend", info.Backend, "width", info.Width, "height", info.Height, "fps", info.FPS, "fourcc", info.FourCC)
	if s.kind == KindV4L2 {
		s.warnV4L2Mismatch(info)
	}
}

// reading is the state of one session's read loop.
type reading struct {
	// bad counts failed reads in a row. OpenCV's FFmpeg reader fails a read whose packet does
	// not decode, but the demuxer has moved past that packet: the next read gets the next
	// frame. So a few failed reads are tried through and, when a frame follows, counted as
	// skipped frames; only maxBadReads in a row, or a read that waited for the read timeout,
	// end the session.
	bad      int
	lastGood time.Time
	// sincePass counts the frames since the file (re)started; a failed read right after a
	// seek is the end of the file.
	sincePass uint64
}

// failedRead handles a read that failed at now. It reports whether to read again (a failed
// read to try through, or a looping file rewound); when not, it has set how the session ended
// in r (the end of the file, or the error).
func (s *Source) failedRead(vc *gocv.VideoCapture, rd *reading, r *attemptResult, now time.Time) bool {
	rd.bad++
	if s.skipsBadReads() && rd.bad <= maxBadReads && now.Sub(rd.lastGood) < s.cfg.StallTimeout {
		return true
	}
	if s.kind == KindFile {
		if s.cfg.Loop && rd.sincePass > 0 {
			vc.Set(gocv.VideoCapturePosFrames, 0)
			rd.sincePass, rd.bad = 0, 0
			return true
		}
		r.eof = true
		return false
	}
	r.err = s.readError(*r, rd.bad, now.Sub(rd.lastGood))
	return false
}

// goodRead counts a frame read at now (and the failed reads it followed as skipped), marks
// the session streaming on its first frame, and returns the frame's sequence number.
func (s *Source) goodRead(session uint64, rd *reading, r *attemptResult, now time.Time, progress *atomic.Int64) uint64 {
	if rd.bad > 0 {
		s.corrupt.Add(uint64(rd.bad))
		s.log.Debug("skipped frames that failed to decode", "frames", rd.bad, "undecodable_total", s.corrupt.Load())
		rd.bad = 0
	}
	rd.lastGood = now
	seq := s.frames.Add(1)
	rd.sincePass++
	r.frames++
	progress.Store(now.UnixNano())
	if r.first.IsZero() {
		r.first = now
		s.setPhase(session, PhaseStreaming, nil, time.Time{})
		s.log.Info("camera streaming")
	}
	r.last = now
	return seq
}

// maxBadReads is how many failed reads in a row are tried through (see read) before the
// session counts as failed. At the end of a stream reads fail at once, so trying costs
// microseconds.
const maxBadReads = 8

// skipsBadReads says whether a failed read may be followed by a good one: true for sources
// read through FFmpeg (streams and files), where a damaged packet costs one frame.
func (s *Source) skipsBadReads() bool { return s.kind == KindNetwork || s.kind == KindFile }

// readError says how a session's reading ended: after how many frames and how long, whether
// the last read waited for the read timeout (no data) or failed at once (closed, or data that
// does not decode), and how many reads in a row failed.
func (s *Source) readError(r attemptResult, bad int, sinceGood time.Duration) error {
	switch s.kind {
	case KindNetwork:
		what := fmt.Sprintf("%d reads in a row failed at once: the server closed the stream, or it sends data that does not decode", bad)
		if sinceGood >= s.cfg.StallTimeout {
			what = fmt.Sprintf("no data for %v (stall_timeout)", s.cfg.StallTimeout)
		}
		if r.frames == 0 {
			return fmt.Errorf("stream %s: opened but no frame decoded: %s", redact(s.cfg.URL), what)
		}
		return fmt.Errorf("stream %s: stopped after %d frames in %v: %s", redact(s.cfg.URL), r.frames,
			r.last.Sub(r.first).Round(time.Millisecond), what)
	case KindGStreamer:
		return errors.New("GStreamer pipeline: read failed (end of stream or pipeline error)")
	case KindV4L2:
		return fmt.Errorf("V4L2 device %s: read failed (unplugged, or no frame from the driver)", s.cfg.URL)
	}
	return errors.New("read failed")
}

func (s *Source) warnV4L2Mismatch(info captureInfo) {
	c := s.cfg
	if (c.Width > 0 && c.Width != info.Width) || (c.Height > 0 && c.Height != info.Height) ||
		(c.FourCC != "" && c.FourCC != info.FourCC) || (c.FPS > 0 && (info.FPS < c.FPS*0.99 || info.FPS > c.FPS*1.01)) {
		s.log.Warn("V4L2 device chose other settings than requested (v4l2-ctl --list-formats-ext shows what it offers)",
			"want_width", c.Width, "want_height", c.Height, "want_fps", c.FPS, "want_fourcc", c.FourCC,
			"width", info.Width, "height", info.Height, "fps", info.FPS, "fourcc", info.FourCC)
	}
}

// pacer holds a file source to its frame rate; it is a no-op for live sources and pace=fast.
type pacer struct {
	period time.Duration
	due    time.Time
	timer  *time.Timer
}

func (s *Source) newPacer(fileFPS float64) *pacer {
	if s.kind != KindFile || s.cfg.Pace != PaceRealtime {
		return &pacer{}
	}
	fps := s.cfg.FPS
	if fps <= 0 {
		fps = fileFPS
	}
	if !(fps > 0 && fps <= 1000) {
		s.log.Warn("video file reports no usable frame rate; pacing at 25 fps (set fps to choose)", "reported", fileFPS)
		fps = 25
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacer{period: time.Duration(float64(time.Second) / fps), timer: t}
}

// wait sleeps until the next frame is due; false when stop came first. A consumer that fell
// more than a frame behind restarts the schedule rather than getting a burst. The wait is
// the source's own doing, not a stall: progress moves to the due time first, so the
// watchdog counts only time spent reading.
func (p *pacer) wait(stop <-chan struct{}, progress *atomic.Int64) bool {
	if p.period == 0 {
		return true
	}
	now := time.Now()
	if p.due.IsZero() || now.Sub(p.due) > p.period {
		p.due = now
	}
	p.due = p.due.Add(p.period)
	progress.Store(p.due.UnixNano())
	p.timer.Reset(p.due.Sub(now))
	select {
	case <-stop:
		p.timer.Stop()
		return false
	case <-p.timer.C:
		return true
	}
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
