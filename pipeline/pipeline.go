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
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/motion"
	"github.com/stardetr/stardetr/track"
)

// Source produces frames until its context ends. The sink takes ownership of each frame and
// releases it exactly once; it never blocks.
type Source interface {
	Run(ctx context.Context, sink func(*camera.Frame)) error
	State() camera.State
}

// Slot is one input slot of the model (model.Batch): room for Size frames, each filled by
// Preprocess(i), run together by Run(n) for frames 0..n-1 and read back by Decode(i). Two
// slots let the pipeline preprocess the next frames while the model runs on the current ones;
// different slots may be used concurrently, one slot only by one goroutine at a time.
type Slot interface {
	Size() int
	Preprocess(i int, frame gocv.Mat) error
	Run(n int) error
	Decode(i, frameW, frameH int, out []model.Detection) []model.Detection
}

// FrameSlot is a slot of one frame (model.Input, or a test's stand-in model).
type FrameSlot interface {
	Preprocess(frame gocv.Mat) error
	Run() error
	Decode(frameW, frameH int, out []model.Detection) []model.Detection
}

// OneFrame makes a one-frame slot a Slot of Size 1.
func OneFrame(s FrameSlot) Slot { return oneFrame{s} }

type oneFrame struct{ s FrameSlot }

func (o oneFrame) Size() int                              { return 1 }
func (o oneFrame) Preprocess(_ int, frame gocv.Mat) error { return o.s.Preprocess(frame) }
func (o oneFrame) Run(int) error                          { return o.s.Run() }
func (o oneFrame) Decode(_, w, h int, out []model.Detection) []model.Detection {
	return o.s.Decode(w, h, out)
}

// Options tune the inference worker.
type Options struct {
	// BatchWait is how long a slot with room for several frames, holding at least one, waits
	// for other cameras' frames before the model runs on what it holds.
	BatchWait time.Duration
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
	Detections    []model.Detection // after the policy's score and class filters; TrackID set when the camera tracks
}

// Tracked is one frame's tracking outcome for a camera: events, the objects whose best score
// rose (the moment for an event snapshot) and changed counts.
type Tracked struct {
	Camera string
	Time   time.Time
	// Frame is the picture the result describes. It stays owned by the pipeline and is
	// valid only during the call: a sink copies what it keeps.
	Frame gocv.Mat
	track.Result
}

// EventPublisher takes tracking outcomes. A Publisher that also implements it receives one
// call per processed frame of a tracking camera that changed something, whatever the
// camera's publish policy: events describe objects, not frames.
type EventPublisher interface {
	PublishTracked(t *Tracked) error
}

// Camera is one configured camera: its source and publish policy. Key is the configuration
// that built it (a comparable value, typically the camera's config section): Update restarts
// a camera whose Key is not deeply equal (reflect.DeepEqual) to the running one's and leaves
// the others running.
type Camera struct {
	Name   string
	Key    any
	Source Source
	Policy Policy
	// Scene tracks the camera's objects; nil: no tracking. The pipeline's worker is its
	// only user.
	Scene *track.Scene
	// Events bounds the rate of the scene's events; nil: no bound. The worker is its only user.
	Events *EventLimit
	// Detect chooses the frames the model runs on; the zero value is DetectAlways.
	Detect Detect
	// Motion configures the motion detector of a camera in detect mode motion.
	Motion motion.Config
	// Objects drops detections before tracking and publishing.
	Objects Objects
}

// Pipeline runs the cameras and the inference worker.
type Pipeline struct {
	slots  []Slot
	opts   Options
	pub    Publisher
	events EventPublisher // pub, when it takes events; else nil
	log    *slog.Logger
	st     *stageStats

	mu      sync.Mutex
	cams    map[string]*camState
	order   []string // round-robin order of the worker
	runCtx  context.Context
	running bool

	wake      chan struct{} // capacity 1: some camera has a new frame
	busySince atomic.Int64  // unix ns when the current frame's processing began; 0 when idle
	modelErr  atomic.Pointer[string]
	camWG     sync.WaitGroup
}

// New returns a pipeline that runs the model through slots (one: preprocessing and inference
// take turns; two: the next frames are preprocessed while the model runs) and publishes
// through pub. Cameras are added with Update.
func New(slots []Slot, pub Publisher, opts Options, log *slog.Logger) *Pipeline {
	if len(slots) == 0 {
		panic("pipeline.New: no model slot")
	}
	events, _ := pub.(EventPublisher)
	return &Pipeline{
		events: events,
		slots:  slots,
		opts:   opts,
		pub:    pub,
		log:    log,
		st:     newStageStats(),
		cams:   map[string]*camState{},
		wake:   make(chan struct{}, 1),
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
			if c.Name == name && reflect.DeepEqual(c.Key, cs.cam.Key) {
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
			if !cs.admit(f) {
				return
			}
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

// job is a slot's preprocessed frames, one per camera, waiting for the model.
type job struct {
	slot   Slot
	frames []jobFrame // frames[i] is in the slot's place i
}

type jobFrame struct {
	cs  *camState
	f   *camera.Frame
	lat Latency
}

// Run starts the cameras and serves them until ctx ends: one goroutine preprocesses the
// freshest frames into a free slot while the model runs on the other. Then it stops the
// sources, finishes the frames in flight, releases every frame it holds and returns.
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

	free := make(chan *job, len(p.slots))
	for _, sl := range p.slots {
		free <- &job{slot: sl, frames: make([]jobFrame, 0, sl.Size())}
	}
	jobs := make(chan *job)
	prepDone := make(chan struct{})
	go func() {
		defer close(prepDone)
		p.prepare(ctx, free, jobs)
	}()
	for {
		select {
		case <-ctx.Done():
		case j := <-jobs:
			if ctx.Err() == nil {
				p.infer(j)
				free <- j
				continue
			}
			j.release()
		}
		<-prepDone
		p.shutdown()
		return nil
	}
}

// release gives back the job's frames unprocessed.
func (j *job) release() {
	for _, jf := range j.frames {
		jf.f.Release()
	}
	j.frames = j.frames[:0]
}

// holds reports whether the job has a frame of cs.
func (j *job) holds(cs *camState) bool {
	for _, jf := range j.frames {
		if jf.cs == cs {
			return true
		}
	}
	return false
}

// prepare fills a free slot with the freshest frames of the cameras that have one, one frame
// per camera, going round the cameras in configuration order from where the last slot
// stopped. It waits for a slot first, so that it never holds a frame longer than one
// inference. A slot with room for more frames than it got waits up to Options.BatchWait for
// other cameras' frames, then runs with what it holds.
func (p *Pipeline) prepare(ctx context.Context, free chan *job, jobs chan<- *job) {
	var cams []*camState
	next := 0
	// Go ≥ 1.23 timers (go.mod): after Stop or Reset no stale expiry is ever received.
	batchTimer := time.NewTimer(time.Hour)
	batchTimer.Stop()
	defer batchTimer.Stop()
	for {
		var j *job
		select {
		case <-ctx.Done():
			return
		case j = <-free:
		}
		size := j.slot.Size()
		waiting := false // the batch timer runs
	fill:
		for {
			cams = p.snapshotCams(cams[:0])
			start := next
			for k := 0; k < len(cams) && len(j.frames) < size; k++ {
				c := cams[(start+k)%len(cams)]
				if j.holds(c) {
					continue
				}
				if f := c.take(); f != nil {
					next = (start + k + 1) % len(cams)
					jf := jobFrame{cs: c, f: f}
					if p.preprocess(j.slot, len(j.frames), &jf) {
						j.frames = append(j.frames, jf)
					}
				}
			}
			n := len(j.frames)
			if n == size || (n > 0 && (n >= len(cams) || p.opts.BatchWait <= 0)) {
				break
			}
			if n > 0 && !waiting {
				batchTimer.Reset(p.opts.BatchWait)
				waiting = true
			}
			select {
			case <-ctx.Done():
				j.release()
				return
			case <-p.wake:
			case <-batchTimer.C:
				waiting = false
				break fill
			}
		}
		if waiting {
			batchTimer.Stop()
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			j.release()
			return
		}
	}
}

// preprocess fills place i of the slot from jf's frame; on failure it releases the frame.
func (p *Pipeline) preprocess(slot Slot, i int, jf *jobFrame) bool {
	t0 := time.Now()
	jf.lat.Capture = t0.Sub(jf.f.Time)
	if err := slot.Preprocess(i, jf.f.Mat); err != nil {
		p.fail(jf.cs, jf.f, "preprocess", err)
		jf.f = nil
		return false
	}
	jf.lat.Preprocess = time.Since(t0)
	return true
}

// infer runs the model on a prepared slot and finishes each of its frames. A frame that
// waited while a fresher one of the same camera arrived is replaced by it first:
// preprocessing costs little next to running the model, and detections should describe the
// newest picture.
func (p *Pipeline) infer(j *job) {
	for i := range j.frames {
		jf := &j.frames[i]
		if newer := jf.cs.take(); newer != nil {
			jf.f.Release()
			jf.cs.drops.Add(1)
			jf.f, jf.lat = newer, Latency{}
			p.preprocess(j.slot, i, jf) // on failure jf.f is nil: its place runs, unread
		}
	}
	defer func() { j.frames = j.frames[:0] }()
	t1 := time.Now()
	p.busySince.Store(t1.UnixNano())
	defer p.busySince.Store(0)
	if err := j.slot.Run(len(j.frames)); err != nil {
		for _, jf := range j.frames {
			if jf.f != nil {
				p.fail(jf.cs, jf.f, "inference", err)
			}
		}
		return
	}
	t2 := time.Now()
	p.modelErr.Store(nil)
	for i, jf := range j.frames {
		if jf.f != nil {
			jf.lat.Infer = t2.Sub(t1)
			p.finish(j.slot, i, jf)
		}
	}
}

// finish decodes one frame of a slot that ran, tracks its objects, applies the publish
// policy, and keeps the frame as the camera's snapshot (releasing the previous one).
func (p *Pipeline) finish(slot Slot, i int, jf jobFrame) {
	cs, f, lat := jf.cs, jf.f, jf.lat
	t2 := time.Now()
	w, h := f.Mat.Cols(), f.Mat.Rows()
	cs.all = slot.Decode(i, w, h, cs.all[:0])
	cs.all = cs.cam.Objects.filter(cs.all, w, h)
	t3 := time.Now()
	lat.Decode = t3.Sub(t2)

	if cs.cam.Scene != nil {
		p.track(cs, f, w, h)
	}
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

// track runs the camera's scene on the frame's detections, sets each one's track id and
// hands what changed to the event publisher.
func (p *Pipeline) track(cs *camState, f *camera.Frame, w, h int) {
	if n := cs.gate.skippedBefore(f); n > 0 {
		cs.cam.Scene.Age(n) // the frames motion gating skipped count as misses of lost objects
	}
	res := cs.cam.Scene.Update(f.Time, w, h, cs.all)
	cs.needFrames.Store(cs.cam.Scene.NeedsFrames())
	for i, id := range res.TrackIDs {
		cs.all[i].TrackID = id
	}
	if l := cs.cam.Events; l != nil {
		res.Events, res.Best = l.Filter(f.Time, res.Events, res.Best)
	}
	if p.events != nil && len(res.Events)+len(res.Best)+len(res.Counts) > 0 {
		cs.tracked = Tracked{Camera: cs.cam.Name, Time: f.Time, Frame: f.Mat, Result: res}
		if err := p.events.PublishTracked(&cs.tracked); err != nil {
			cs.log.Warn("publishing events failed", "frame", f.Seq, "err", err)
		}
		cs.tracked = Tracked{}
	}
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
		p.closeScene(cs)
	}
}

// closeScene ends the tracks of a stopped camera: end events, counts back to 0. Only
// shutdown calls it, when the worker no longer uses the scene; a camera that a reload
// restarts gets a new scene without them.
func (p *Pipeline) closeScene(cs *camState) {
	sc := cs.cam.Scene
	if sc == nil || p.events == nil {
		return
	}
	res := sc.Close()
	if l := cs.cam.Events; l != nil {
		res.Events, res.Best = l.Filter(time.Now(), res.Events, res.Best)
	}
	if len(res.Events)+len(res.Counts) == 0 {
		return
	}
	// No frame goes with it: Close reports no best frames.
	if err := p.events.PublishTracked(&Tracked{Camera: cs.cam.Name, Time: time.Now(), Result: res}); err != nil {
		cs.log.Warn("publishing the end events failed", "err", err)
	}
}
