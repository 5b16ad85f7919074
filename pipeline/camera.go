package pipeline

import (
	"context"
	"image"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/model"
)

// camState is one running camera: its latest-frame hand-off, counters, the worker's reused
// message, and the last processed frame kept for snapshots.
type camState struct {
	cam    Camera
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	latestMu sync.Mutex
	latest   *camera.Frame // the newest frame not yet taken by the worker; owned by the hand-off

	lastFrame  atomic.Int64  // unix ns of the newest frame handed over; 0 if none yet
	drops      atomic.Uint64 // frames replaced in the hand-off before the worker took them
	processedN atomic.Uint64
	published  atomic.Uint64
	fpsBits    atomic.Uint64 // float64 bits of the smoothed processing rate

	// Motion gating (detect mode motion; gate is nil otherwise).
	gate       *gate
	skipped    atomic.Uint64 // frames the gate turned away: no motion, nothing tracked, no keyframe due
	moving     atomic.Bool   // the newest frame showed motion
	needFrames atomic.Bool   // the scene has objects that need every frame (track.Scene.NeedsFrames)
	runs       runLog
	started    time.Time

	// Worker-only state: reused across frames so the per-frame path does not allocate.
	all      []model.Detection
	tracked  Tracked
	msg      Message
	lastPub  time.Time
	lastProc time.Time
	interval float64 // smoothed seconds between processed frames

	snapMu   sync.Mutex
	snap     *camera.Frame // last processed frame, owned here until replaced
	snapDets []model.Detection
	viewers  []chan struct{} // live views of the camera, each told (without blocking) of every new snapshot
	// snapMotion is the snapshot frame's motion boxes (detect mode motion); under snapMu.
	snapMotion []image.Rectangle
}

func newCamState(c Camera, log *slog.Logger) *camState {
	return &camState{cam: c, log: log, gate: newGate(c), started: time.Now()}
}

// put stores f as the newest frame, releasing a frame the worker did not take in time. It
// reports whether the hand-off was empty (the worker needs waking).
func (cs *camState) put(f *camera.Frame) bool {
	cs.lastFrame.Store(f.Time.UnixNano())
	cs.latestMu.Lock()
	old := cs.latest
	cs.latest = f
	cs.latestMu.Unlock()
	if old != nil {
		old.Release()
		cs.drops.Add(1)
		return false
	}
	return true
}

// take hands the newest frame to the worker, which then owns it.
func (cs *camState) take() *camera.Frame {
	cs.latestMu.Lock()
	f := cs.latest
	cs.latest = nil
	cs.latestMu.Unlock()
	return f
}

// processed updates the smoothed frame rate after a frame finished at now.
func (cs *camState) processed(now time.Time) {
	cs.processedN.Add(1)
	cs.runs.add(now)
	if !cs.lastProc.IsZero() {
		d := now.Sub(cs.lastProc).Seconds()
		if cs.interval == 0 {
			cs.interval = d
		} else {
			cs.interval += 0.2 * (d - cs.interval)
		}
		if cs.interval > 0 {
			cs.fpsBits.Store(float64bits(1 / cs.interval))
		}
	}
	cs.lastProc = now
}

// keepSnapshot makes f the camera's snapshot frame and releases the previous one.
func (cs *camState) keepSnapshot(f *camera.Frame, dets []model.Detection) {
	cs.snapMu.Lock()
	old := cs.snap
	cs.snap = f
	cs.snapDets = append(cs.snapDets[:0], dets...)
	cs.snapMotion = cs.gate.motionOf(f, cs.snapMotion[:0])
	for _, v := range cs.viewers {
		select {
		case v <- struct{}{}:
		default: // the viewer has not taken the last one yet: it will see this one
		}
	}
	cs.snapMu.Unlock()
	if old != nil {
		old.Release()
	}
}

// stop ends the camera's source and waits for it.
func (cs *camState) stop() {
	if cs.cancel != nil {
		cs.cancel()
		<-cs.done
	}
	cs.releaseAll()
}

// releaseAll returns every frame the pipeline holds for this camera, once its source has
// stopped, and frees its motion detector.
func (cs *camState) releaseAll() {
	cs.gate.close()
	if f := cs.take(); f != nil {
		f.Release()
	}
	cs.snapMu.Lock()
	f := cs.snap
	cs.snap = nil
	cs.snapMu.Unlock()
	if f != nil {
		f.Release()
	}
}
