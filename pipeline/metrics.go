package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/camera"
)

var (
	descFrames = prometheus.NewDesc("stardetr_frames_processed_total",
		"Frames that went through the model.", []string{"camera"}, nil)
	descDrops = prometheus.NewDesc("stardetr_frames_dropped_total",
		"Frames dropped before inference: where=handoff: replaced by a newer frame before the model took them; where=source: read while the pipeline held every pooled frame; where=undecodable: skipped because they failed to decode.",
		[]string{"camera", "where"}, nil)
	descPublished = prometheus.NewDesc("stardetr_messages_handed_total",
		"Detection messages handed to the publisher.", []string{"camera"}, nil)
	descFPS = prometheus.NewDesc("stardetr_camera_fps",
		"Smoothed rate of processed frames.", []string{"camera"}, nil)
	descReconnects = prometheus.NewDesc("stardetr_camera_reconnects_total",
		"Times the camera source was reopened.", []string{"camera"}, nil)
	descStreaming = prometheus.NewDesc("stardetr_camera_streaming",
		"1 while the camera delivers frames, 0 while it connects or retries.", []string{"camera"}, nil)
	descSkipped = prometheus.NewDesc("stardetr_frames_skipped_total",
		"Frames not sent to the model on purpose: reason=no_motion: a camera in detect mode motion saw no motion, tracked nothing that needs every frame, and no keyframe was due.",
		[]string{"camera", "reason"}, nil)
	descMotion = prometheus.NewDesc("stardetr_motion_active",
		"1 while the newest frame of a camera in detect mode motion shows motion, else 0.", []string{"camera"}, nil)
	descErrors = prometheus.NewDesc("stardetr_model_errors_total",
		"Frames whose preprocessing or inference failed.", nil, nil)
	descEvents = prometheus.NewDesc("stardetr_events_total",
		"Tracking events handed to the publisher, by type (new, update, end).", []string{"camera", "type"}, nil)
	descEventDrops = prometheus.NewDesc("stardetr_events_dropped_total",
		"Tracking events dropped to keep events.max_per_second: reason=rate: every event of an object not announced; reason=coalesced: an update replaced by a later update or the end of its object.",
		[]string{"camera", "reason"}, nil)
)

// Collector exposes the pipeline's metrics (frames, drops, fps, reconnects and the stage
// latency histograms) for a Prometheus registry.
func (p *Pipeline) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Pipeline }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFrames, descDrops, descPublished, descFPS, descReconnects, descStreaming, descSkipped, descMotion, descErrors, descEvents, descEventDrops} {
		ch <- d
	}
	for _, h := range c.p.st.hist {
		h.Describe(ch)
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, cs := range c.p.snapshotCams(nil) {
		name := cs.cam.Name
		st := cs.cam.Source.State()
		streaming := 0.0
		if st.Phase == camera.PhaseStreaming {
			streaming = 1
		}
		ch <- prometheus.MustNewConstMetric(descFrames, prometheus.CounterValue, float64(cs.processedN.Load()), name)
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(cs.drops.Load()), name, "handoff")
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(st.Drops), name, "source")
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(st.Undecodable), name, "undecodable")
		ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(cs.published.Load()), name)
		ch <- prometheus.MustNewConstMetric(descFPS, prometheus.GaugeValue, float64frombits(cs.fpsBits.Load()), name)
		ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(st.Reconnects), name)
		ch <- prometheus.MustNewConstMetric(descStreaming, prometheus.GaugeValue, streaming, name)
		if l := cs.cam.Events; l != nil {
			for _, k := range eventKinds {
				ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(l.Sent(k)), name, k)
			}
			for _, r := range []string{EventDropRate, EventDropCoalesced} {
				ch <- prometheus.MustNewConstMetric(descEventDrops, prometheus.CounterValue, float64(l.Dropped(r)), name, r)
			}
		}
		moving := 0.0
		if cs.moving.Load() {
			moving = 1
		}
		ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(cs.skipped.Load()), name, "no_motion")
		ch <- prometheus.MustNewConstMetric(descMotion, prometheus.GaugeValue, moving, name)
	}
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(c.p.st.errors.Load()))
	for _, h := range c.p.st.hist {
		h.Collect(ch)
	}
}
