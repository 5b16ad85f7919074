package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/stardetr/stardetr/model"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/publish"
)

// messageSink turns the pipeline's messages into MQTT detection messages and logs a line per
// queued message, so whoever watches the terminal sees detections flow.
type messageSink struct {
	pub   *publish.Publisher
	model model.Info
	log   *slog.Logger
	msg   publish.Detections // reused: PublishDetections encodes before it returns
	// snaps keeps event snapshots (nil: none); recent feeds /api/events.
	snaps  *eventSnapshots
	recent *recentEvents
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (s *messageSink) Publish(m *pipeline.Message) error {
	s.msg.Camera = m.Camera
	s.msg.Frame = m.Frame
	s.msg.Time = m.Time
	s.msg.Width, s.msg.Height = m.Width, m.Height
	s.msg.Model = publish.Model{Name: s.model.Model, SHA256: s.model.SHA256}
	s.msg.Latency = publish.Latency{Capture: ms(m.Latency.Capture), Preprocess: ms(m.Latency.Preprocess),
		Infer: ms(m.Latency.Infer), Decode: ms(m.Latency.Decode), Publish: ms(m.Latency.Publish)}
	s.msg.Detections = m.Detections // encoded before PublishDetections returns: no copy needed
	if err := s.pub.PublishDetections(s.msg); err != nil {
		return err
	}
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		attrs := []any{"camera", m.Camera, "frame", m.Frame, "detections", len(m.Detections), "infer_ms", int(ms(m.Latency.Infer))}
		if len(m.Detections) > 0 {
			d := m.Detections[0]
			attrs = append(attrs, "top", d.Label, "score", float64(int(d.Score*1000))/1000)
		}
		// Queued, not published: the broker may be away; the publisher logs "published" (at
		// debug) when the broker acknowledges the message.
		s.log.Info("queued", attrs...)
	}
	return nil
}

// statsMessage builds the periodic …/stats message from the pipeline's counters.
func statsMessage(st pipeline.Stats, provider string, started time.Time) publish.Stats {
	out := publish.Stats{
		Provider: provider,
		Uptime:   time.Since(started),
		Cameras:  map[string]publish.CameraStats{},
		Latency:  st.Latency, // a fresh map per pipeline.Stats call: no copy needed
	}
	for _, c := range st.Cameras {
		out.Cameras[c.Name] = publish.CameraStats{FPS: c.FPS, Frames: c.Processed, Drops: c.Dropped + c.State.Drops}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	out.Memory = publish.Memory{RSSBytes: processRSS(), HeapBytes: m.HeapAlloc}
	return out
}
