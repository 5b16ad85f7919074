package pipeline

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/stats"
)

func float64bits(f float64) uint64     { return math.Float64bits(f) }
func float64frombits(b uint64) float64 { return math.Float64frombits(b) }

// Stage names, in pipeline order.
var Stages = [...]string{"capture", "preprocess", "infer", "decode", "publish"}

const latencyWindow = 256

// stageStats keeps the last latencyWindow latencies of every stage for percentiles.
type stageStats struct {
	mu     sync.Mutex
	ring   [len(Stages)][latencyWindow]float64 // seconds
	n      int
	errors atomic.Uint64
	hist   [len(Stages)]prometheus.Histogram
}

func newStageStats() *stageStats {
	s := &stageStats{}
	for k, name := range Stages {
		s.hist[k] = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "stardetr_stage_seconds",
			Help:        "Time a frame spent in each pipeline stage.",
			ConstLabels: prometheus.Labels{"stage": name},
			Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		})
	}
	return s
}

func (s *stageStats) observe(l *Latency) {
	v := [len(Stages)]time.Duration{l.Capture, l.Preprocess, l.Infer, l.Decode, l.Publish}
	s.mu.Lock()
	i := s.n % latencyWindow
	for k := range v {
		s.ring[k][i] = v[k].Seconds()
	}
	s.n++
	s.mu.Unlock()
	for k := range v {
		s.hist[k].Observe(v[k].Seconds())
	}
}

// CameraStats is one camera's counters and state.
type CameraStats struct {
	Name      string
	State     camera.State
	FPS       float64 // smoothed rate of processed frames
	Processed uint64
	Dropped   uint64 // frames replaced in the hand-off before inference could take them
	// LastFrame is the capture time of the newest frame, or when the camera started if it
	// has delivered none yet.
	LastFrame time.Time
	// Mode is the camera's detect mode (DetectAlways or DetectMotion).
	Mode string
	// DetectRate is how many frames a second the model ran on over the last 10 s.
	DetectRate float64
	// Skipped counts frames a motion-gated camera did not send to the model.
	Skipped uint64
	// Moving is set while a motion-gated camera's newest frame shows motion.
	Moving bool
}

// Stats is a snapshot of the pipeline's counters.
type Stats struct {
	Cameras []CameraStats
	Latency map[string]stats.Percentiles // by stage name, over the last 256 frames
}

// Stats returns the pipeline's counters now. It allocates; call it from stats reporting, not
// per frame.
func (p *Pipeline) Stats() Stats {
	var st Stats
	for _, cs := range p.snapshotCams(nil) {
		st.Cameras = append(st.Cameras, CameraStats{
			Name:      cs.cam.Name,
			State:     cs.cam.Source.State(),
			FPS:       float64frombits(cs.fpsBits.Load()),
			Processed: cs.processedN.Load(),
			Dropped:   cs.drops.Load(),
			LastFrame: time.Unix(0, cs.lastFrame.Load()),
		})
		cs.gateStats(&st.Cameras[len(st.Cameras)-1])
	}
	st.Latency = map[string]stats.Percentiles{}
	p.st.mu.Lock()
	n := min(p.st.n, latencyWindow)
	if n > 0 {
		buf := make([]float64, n)
		for k, name := range Stages {
			copy(buf, p.st.ring[k][:n])
			st.Latency[name] = stats.FromSeconds(buf)
		}
	}
	p.st.mu.Unlock()
	return st
}
