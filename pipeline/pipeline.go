// Package pipeline connects camera sources, one shared detector and a publisher: a
// latest-frame hand-off per camera (a slow model never builds a queue; replaced frames are
// counted as drops), one inference worker that serves the cameras in turn, per-stage timings,
// and each camera's publish policy. It takes interfaces, so its tests can drive it with a real
// model and a fake source or the other way round.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/model"
)

// Source produces frames until its context ends. The sink takes ownership of each frame and
// releases it exactly once; it never blocks.
type Source interface {
	Run(ctx context.Context, sink func(*camera.Frame)) error
	State() camera.State
}

// Detector is the model as the pipeline drives it: one frame at a time, in three timed stages.
type Detector interface {
	Preprocess(frame gocv.Mat) error
	Infer() error
	Decode(frameW, frameH int, out []model.Detection) []model.Detection
}

// Publisher takes messages. Publish must not block on the network, and must copy what it keeps:
// the message and its detections are reused for the camera's next frame.
type Publisher interface {
	Publish(m *Message) error
}

// Latency is the time a frame spent in each stage. Capture is the time from the capture
// timestamp to the start of preprocessing (the wait in the hand-off included).
type Latency struct {
	Capture, Preprocess, Infer, Decode, Publish time.Duration
}

// Message is one processed frame that passed its camera's publish policy.
type Message struct {
	Camera        string
	Frame         uint64 // capture sequence number: gaps are dropped frames
	Time          time.Time
	Width, Height int
	Latency       Latency
	Detections    []model.Detection // after the policy's score and class filters
}

// Camera is one configured camera: its source and publish policy. Key identifies the
// configuration that built it: Update restarts a camera whose key changed and leaves the
// others running.
type Camera struct {
	Name   string
	Key    string
	Source Source
	Policy Policy
}

// Pipeline runs the cameras and the inference worker.
type Pipeline struct {
	det Detector
	pub Publisher
	log *slog.Logger
	st  *stageStats

	mu      sync.Mutex
	cams    map[string]*camState
	order   []string // round-robin order of the worker
	runCtx  context.Context
	running bool

	wake      chan struct{} // capacity 1: some camera has a new frame
	busySince atomic.Int64  // unix ns when the current frame's processing began; 0 when idle
	lastRun   atomic.Int64  // unix ns of the last successful inference
	modelErr  atomic.Pointer[string]
	camWG     sync.WaitGroup
}

// New returns a pipeline that feeds det and publishes through pub. Cameras are added with Update.
func New(det Detector, pub Publisher, log *slog.Logger) *Pipeline {
	return &Pipeline{
		det:  det,
		pub:  pub,
		log:  log,
		st:   newStageStats(),
		cams: map[string]*camState{},
		wake: make(chan struct{}, 1),
	}
}

// Update makes the running set of cameras equal cams: new names start, removed ones stop,
// and a camera whose Key changed is restarted. Unchanged cameras keep running undisturbed.
// Before Run, it only records the cameras.
func (p *Pipeline) Update(cams []Camera) error {
	seen := map[string]bool{}
	for _, c := range cams {
		if seen[c.Name] {
			return fmt.Errorf("pipeline: camera %q listed twice", c.Name)
		}
		seen[c.Name] = true
	}
	p.mu.Lock()
	var stop []*camState
	for name, cs := range p.cams {
		keep := false
		for _, c := range cams {
			if c.Name == name && c.Key == cs.cam.Key {
				keep = true
			}
		}
		if !keep {
			stop = append(stop, cs)
			delete(p.cams, name)
		}
	}
	order := make([]string, 0, len(cams))
	for _, c := range cams {
		order = append(order, c.Name)
		if _, ok := p.cams[c.Name]; ok {
			continue
		}
		cs := newCamState(c, p.log.With("camera", c.Name))
		p.cams[c.Name] = cs
		if p.running {
			p.startCamera(cs)
		}
	}
	p.order = order
	p.mu.Unlock()
	for _, cs := range stop {
		cs.stop()
		p.log.Info("camera stopped", "camera", cs.cam.Name)
	}
	return nil
}

// startCamera runs the camera's source in a goroutine owned by the pipeline; p.mu is held.
func (p *Pipeline) startCamera(cs *camState) {
	ctx, cancel := context.WithCancel(p.runCtx)
	cs.cancel = cancel
	if cs.lastFrame.Load() == 0 {
		cs.lastFrame.Store(time.Now().UnixNano())
	}
	cs.done = make(chan struct{})
	p.camWG.Add(1)
	go func() {
		defer p.camWG.Done()
		defer close(cs.done)
		err := cs.cam.Source.Run(ctx, func(f *camera.Frame) {
			if cs.put(f) {
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			cs.log.Error("camera source ended", "err", err)
		}
	}()
}

// Run starts the cameras and serves them from one inference worker until ctx ends. Then it
// stops the sources, finishes the frame in flight, releases every frame it holds and returns.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("pipeline: already running")
	}
	p.running = true
	p.runCtx = ctx
	for _, cs := range p.cams {
		p.startCamera(cs)
	}
	p.mu.Unlock()

	var batch []*camState
	for {
		select {
		case <-ctx.Done():
			p.shutdown()
			return nil
		case <-p.wake:
		}
		// Serve every camera with a fresh frame once, in configuration order, then wait again.
		batch = p.snapshotCams(batch[:0])
		for _, cs := range batch {
			if ctx.Err() != nil {
				break
			}
			if f := cs.take(); f != nil {
				p.process(cs, f)
			}
		}
	}
}

func (p *Pipeline) snapshotCams(dst []*camState) []*camState {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.order {
		if cs, ok := p.cams[name]; ok {
			dst = append(dst, cs)
		}
	}
	return dst
}

func (p *Pipeline) shutdown() {
	p.mu.Lock()
	cams := make([]*camState, 0, len(p.cams))
	for _, cs := range p.cams {
		cams = append(cams, cs)
	}
	p.running = false
	p.mu.Unlock()
	for _, cs := range cams {
		cs.cancel()
	}
	p.camWG.Wait()
	for _, cs := range cams {
		cs.releaseAll()
	}
}

// process runs one frame through the model and the publish policy, then keeps it as the
// camera's snapshot frame (releasing the previous one).
func (p *Pipeline) process(cs *camState, f *camera.Frame) {
	t0 := time.Now()
	p.busySince.Store(t0.UnixNano())
	defer p.busySince.Store(0)

	var lat Latency
	lat.Capture = t0.Sub(f.Time)
	w, h := f.Mat.Cols(), f.Mat.Rows()
	if err := p.det.Preprocess(f.Mat); err != nil {
		p.fail(cs, f, "preprocess", err)
		return
	}
	t1 := time.Now()
	lat.Preprocess = t1.Sub(t0)
	if err := p.det.Infer(); err != nil {
		p.fail(cs, f, "inference", err)
		return
	}
	t2 := time.Now()
	lat.Infer = t2.Sub(t1)
	p.lastRun.Store(t2.UnixNano())
	p.modelErr.Store(nil)
	cs.all = p.det.Decode(w, h, cs.all[:0])
	t3 := time.Now()
	lat.Decode = t3.Sub(t2)

	cs.msg.Detections = cs.msg.Detections[:0]
	for _, d := range cs.all {
		if cs.cam.Policy.keep(d.ClassID, d.Score) {
			cs.msg.Detections = append(cs.msg.Detections, d)
		}
	}
	if cs.cam.Policy.due(t3, cs.lastPub, len(cs.msg.Detections)) {
		cs.msg.Camera = cs.cam.Name
		cs.msg.Frame = f.Seq
		cs.msg.Time = f.Time
		cs.msg.Width, cs.msg.Height = w, h
		cs.msg.Latency = lat
		if err := p.pub.Publish(&cs.msg); err != nil {
			cs.log.Warn("publish failed", "frame", f.Seq, "err", err)
		} else {
			cs.lastPub = t3
			cs.published.Add(1)
		}
		lat.Publish = time.Since(t3)
	}
	p.st.observe(&lat)
	cs.processed(t3)
	cs.keepSnapshot(f, cs.all)
}

func (p *Pipeline) fail(cs *camState, f *camera.Frame, stage string, err error) {
	msg := fmt.Sprintf("%s of frame %d from %s: %v", stage, f.Seq, cs.cam.Name, err)
	p.modelErr.Store(&msg)
	p.st.errors.Add(1)
	cs.log.Error(stage+" failed", "frame", f.Seq, "err", err)
	f.Release()
}

// Progressing reports whether the worker is idle or its current frame has been in processing
// for less than limit. The daemon pings the systemd watchdog only while this holds, so a
// stuck inference gets the service restarted.
func (p *Pipeline) Progressing(limit time.Duration) bool {
	b := p.busySince.Load()
	return b == 0 || time.Since(time.Unix(0, b)) < limit
}

// ModelError returns the last stage error if the most recent frame failed, or "".
func (p *Pipeline) ModelError() string {
	if s := p.modelErr.Load(); s != nil {
		return *s
	}
	return ""
}
