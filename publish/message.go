package publish

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/stats"
)

// SchemaVersion is the "v" field of detection and stats messages
// (schema/detections.v1.json, schema/stats.v1.json).
const SchemaVersion = 1

// Detections is what the pipeline hands over for one processed frame. The
// publisher adds v, device and seq.
type Detections struct {
	Camera     string                // one topic level: no '/', '+', '#'
	Frame      uint64                // capture sequence number; gaps are dropped frames
	Time       time.Time             // capture time
	Width      int                   // frame size in pixels, the space of Box
	Height     int                   //
	Model      Model                 //
	Latency    Latency               // per stage, milliseconds
	Detections []detection.Detection // may be empty
}

// Model identifies the model that produced the detections.
type Model struct {
	Name   string
	SHA256 string // hex prefix of the model file's SHA-256 (e.g. 12 digits)
}

// Latency per pipeline stage, in milliseconds.
type Latency struct {
	Capture    float64
	Preprocess float64
	Infer      float64
	Decode     float64
	Publish    float64
}

// Stats is a periodic health report. The publisher adds v, device, ts and
// its own queue counters.
type Stats struct {
	Provider string                       // execution provider in use (cpu, cuda, tensorrt)
	Uptime   time.Duration                //
	Cameras  map[string]CameraStats       // by camera name
	Latency  map[string]stats.Percentiles // by stage (capture, preprocess, infer, decode, publish), ms
	Memory   Memory
}

// CameraStats are one camera's counters.
type CameraStats struct {
	FPS    float64 // processed frames per second over the last interval
	Frames uint64  // frames processed since start
	Drops  uint64  // frames dropped since start
}

// Memory use of the process.
type Memory struct {
	RSSBytes  uint64
	HeapBytes uint64
}

// Wire formats. Floats are rounded so that messages stay small: pixels and
// milliseconds to 0.01, scores to 0.0001.

type wireDetections struct {
	V          int             `json:"v"`
	Device     string          `json:"device"`
	Camera     string          `json:"camera"`
	Seq        uint64          `json:"seq"`
	Frame      uint64          `json:"frame"`
	TS         string          `json:"ts"`
	Width      int             `json:"width"`
	Height     int             `json:"height"`
	Model      wireModel       `json:"model"`
	LatencyMS  wireLatency     `json:"latency_ms"`
	Detections []wireDetection `json:"detections"`
}

type wireModel struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

type wireLatency struct {
	Capture    float64 `json:"capture"`
	Preprocess float64 `json:"preprocess"`
	Infer      float64 `json:"infer"`
	Decode     float64 `json:"decode"`
	Publish    float64 `json:"publish"`
}

type wireDetection struct {
	ClassID int        `json:"class_id"`
	Label   string     `json:"label"`
	Score   float64    `json:"score"`
	Box     [4]float64 `json:"box"`
	TrackID uint64     `json:"track_id,omitempty"`
}

type wireStats struct {
	V        int                        `json:"v"`
	Device   string                     `json:"device"`
	TS       string                     `json:"ts"`
	UptimeS  float64                    `json:"uptime_s"`
	Provider string                     `json:"provider"`
	Cameras  map[string]wireCameraStats `json:"cameras"`
	Latency  map[string]wirePercentiles `json:"latency_ms"`
	Queue    wireQueue                  `json:"queue"`
	Memory   wireMemory                 `json:"memory"`
}

type wireCameraStats struct {
	FPS    float64 `json:"fps"`
	Frames uint64  `json:"frames"`
	Drops  uint64  `json:"drops"`
}

type wirePercentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type wireQueue struct {
	Depth     int    `json:"depth"`
	Bytes     int64  `json:"bytes"`
	Dropped   uint64 `json:"dropped"`
	Published uint64 `json:"published"`
}

type wireMemory struct {
	RSSBytes  uint64 `json:"rss_bytes"`
	HeapBytes uint64 `json:"heap_bytes"`
}

// timeFormat is RFC 3339 with milliseconds, always in UTC.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func round(v float64, scale float64) float64 { return math.Round(v*scale) / scale }

func finite(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s is %v: not a number JSON can carry", what, v)
	}
	return nil
}

func encodeDetections(device string, seq uint64, m *Detections) ([]byte, error) {
	w := wireDetections{
		V: SchemaVersion, Device: device, Camera: m.Camera, Seq: seq, Frame: m.Frame,
		TS: m.Time.UTC().Format(timeFormat), Width: m.Width, Height: m.Height,
		Model: wireModel{Name: m.Model.Name, SHA256: m.Model.SHA256},
		LatencyMS: wireLatency{
			Capture: round(m.Latency.Capture, 1e2), Preprocess: round(m.Latency.Preprocess, 1e2),
			Infer: round(m.Latency.Infer, 1e2), Decode: round(m.Latency.Decode, 1e2),
			Publish: round(m.Latency.Publish, 1e2),
		},
		Detections: make([]wireDetection, len(m.Detections)),
	}
	for _, l := range []float64{m.Latency.Capture, m.Latency.Preprocess, m.Latency.Infer, m.Latency.Decode, m.Latency.Publish} {
		if err := finite("latency", l); err != nil {
			return nil, err
		}
	}
	for i, d := range m.Detections {
		if err := finite(fmt.Sprintf("detections[%d].score", i), float64(d.Score)); err != nil {
			return nil, err
		}
		wd := wireDetection{ClassID: d.ClassID, Label: d.Label, Score: round(float64(d.Score), 1e4), TrackID: d.TrackID}
		for j, v := range d.Box {
			if err := finite(fmt.Sprintf("detections[%d].box[%d]", i, j), float64(v)); err != nil {
				return nil, err
			}
			wd.Box[j] = round(float64(v), 1e2)
		}
		w.Detections[i] = wd
	}
	return json.Marshal(&w)
}

func encodeStats(device string, now time.Time, s *Stats, q wireQueue) ([]byte, error) {
	w := wireStats{
		V: SchemaVersion, Device: device, TS: now.UTC().Format(timeFormat),
		UptimeS: round(s.Uptime.Seconds(), 1e3), Provider: s.Provider,
		Cameras: make(map[string]wireCameraStats, len(s.Cameras)),
		Latency: make(map[string]wirePercentiles, len(s.Latency)),
		Queue:   q,
		Memory:  wireMemory{RSSBytes: s.Memory.RSSBytes, HeapBytes: s.Memory.HeapBytes},
	}
	for name, c := range s.Cameras {
		if err := finite("cameras."+name+".fps", c.FPS); err != nil {
			return nil, err
		}
		w.Cameras[name] = wireCameraStats{FPS: round(c.FPS, 1e2), Frames: c.Frames, Drops: c.Drops}
	}
	for stage, p := range s.Latency {
		for _, v := range []float64{p.P50, p.P90, p.P99, p.Max} {
			if err := finite("latency_ms."+stage, v); err != nil {
				return nil, err
			}
		}
		w.Latency[stage] = wirePercentiles{P50: round(p.P50, 1e2), P90: round(p.P90, 1e2), P99: round(p.P99, 1e2), Max: round(p.Max, 1e2)}
	}
	return json.Marshal(&w)
}
