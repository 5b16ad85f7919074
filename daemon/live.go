package daemon

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stardetr/stardetr/pipeline"
)

//go:embed web/index.html
var indexHTML []byte

// liveView serves the page at / and the cameras' annotated MJPEG streams. Streams encode
// frames only while someone watches; each camera takes at most http.max_viewers at once.
type liveView struct {
	pipe       *pipeline.Pipeline
	maxViewers int
	health     func() health
	// ctx ends every stream when the HTTP server shuts down: a stream never ends on its own.
	ctx    context.Context
	cancel context.CancelFunc
}

// rewatch is how long a stream waits for a frame before registering again: a reload that
// restarts the camera replaces what it watched.
const rewatch = 5 * time.Second

func (v *liveView) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'")
	_, _ = w.Write(indexHTML)
}

// cameras serves /api/cameras: each camera's state, frame rate, detect mode, detections per
// second and motion.
func (v *liveView) cameras(w http.ResponseWriter, r *http.Request) {
	out := v.health().Cameras
	if out == nil {
		out = []cameraHealth{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// stream serves /stream/<camera>.mjpeg: the camera's processed frames with boxes, labels,
// track ids and zones drawn, as multipart/x-mixed-replace JPEGs; with ?motion=1 the frames'
// motion boxes too (detect mode motion).
func (v *liveView) stream(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".mjpeg")
	if !ok {
		http.Error(w, "use /stream/<camera>.mjpeg", http.StatusNotFound)
		return
	}
	next, stop, err := v.pipe.Watch(name, v.maxViewers)
	switch {
	case errors.Is(err, pipeline.ErrNoCamera):
		http.Error(w, fmt.Sprintf("no camera named %q", name), http.StatusNotFound)
		return
	case errors.Is(err, pipeline.ErrTooManyViewers):
		http.Error(w, fmt.Sprintf("camera %q has %d viewers, the most http.max_viewers allows", name, v.maxViewers), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer func() { stop() }()
	snapshot := v.pipe.Snapshot
	if r.URL.Query().Get("motion") == "1" {
		snapshot = v.pipe.SnapshotWithMotion
	}
	const boundary = "stardetrframe"
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+boundary)
	w.Header().Set("Cache-Control", "no-store")
	// A stream outlives the server's write timeout (httpLimits): each frame gets its own write
	// deadline below. (The read timeout does not reach it: net/http lifts the read deadline
	// once a request without a body is read, to notice the viewer leaving.)
	rc := http.NewResponseController(w)
	timer := time.NewTimer(rewatch)
	defer timer.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-v.ctx.Done():
			return
		case <-timer.C:
			stop()
			if next, stop, err = v.pipe.Watch(name, v.maxViewers); err != nil {
				stop = func() {}
				return
			}
			timer.Reset(rewatch)
			continue
		case <-next:
			timer.Reset(rewatch)
		}
		jpg, err := snapshot(name)
		if err != nil || jpg == nil {
			continue
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteDeadline)) // a stalled viewer is dropped
		if _, err := fmt.Fprintf(w, "--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %s\r\n\r\n", boundary, strconv.Itoa(len(jpg))); err != nil {
			return
		}
		if _, err := w.Write(append(jpg, '\r', '\n')); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
