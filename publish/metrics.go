package publish

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is a snapshot of the publisher's counters and connection state.
type Metrics struct {
	Published         uint64 // detection messages the broker acknowledged (QoS 0: written to the socket)
	Queued            uint64 // detection messages accepted into the disk queue
	Dropped           uint64 // messages dropped, all reasons: the sum of the five below
	DroppedQueueFull  uint64 // the oldest, for the queue's bound (mqtt.queue.max_mb)
	DroppedDiskFull   uint64 // for a full state_dir file system
	DroppedWriteError uint64 // a file of the queue or the counters could not be written
	DroppedTooLarge   uint64 // a message larger than the whole queue
	DroppedCorrupt    uint64 // a queued message that no longer decoded
	Corrupt           uint64 // queued detection messages lost to corrupt records on disk
	NoSpace           uint64 // appends that found the file system full with nothing left to free
	QueueDepth        int    // messages waiting in the disk queue (including unacknowledged ones)
	QueueBytes        int64  // their size on disk
	StatsPublished    uint64 // stats messages handed to the client
	StatsSkipped      uint64 // stats messages skipped while disconnected
	PublishErrors     uint64 // sends that failed and were retried from the queue
	ConnectAttempts   uint64
	ConnectFailures   uint64
	Connected         bool
	Broker            string // broker of the current or last connection
	LastError         error  // last connection error; nil once connected
}

// Metrics returns the current counters.
func (p *Publisher) Metrics() Metrics {
	qs := p.queue.Stats()
	p.mu.Lock()
	connected, broker, lastErr := p.link != nil, p.connectedTo, p.lastErr
	p.mu.Unlock()
	return Metrics{
		Published:         p.published.Load(),
		Queued:            p.queued.Load(),
		Dropped:           p.drops.total(),
		DroppedQueueFull:  p.drops[dropQueueFull].Load(),
		DroppedDiskFull:   p.drops[dropDiskFull].Load(),
		DroppedWriteError: p.drops[dropWriteError].Load(),
		DroppedTooLarge:   p.drops[dropTooLarge].Load(),
		DroppedCorrupt:    p.drops[dropCorrupt].Load(),
		Corrupt:           p.corrupt.Load(),
		NoSpace:           qs.NoSpace,
		QueueDepth:        qs.Records,
		QueueBytes:        qs.Bytes,
		StatsPublished:    p.statsPublished.Load(),
		StatsSkipped:      p.statsSkipped.Load(),
		PublishErrors:     p.publishErrors.Load(),
		ConnectAttempts:   p.connectAttempts.Load(),
		ConnectFailures:   p.connectFailures.Load(),
		Connected:         connected,
		Broker:            broker,
		LastError:         lastErr,
	}
}

var (
	descPublished = prometheus.NewDesc("stardetr_mqtt_published_total",
		"Messages published, by topic kind (detections: acknowledged by the broker).", []string{"kind"}, nil)
	descQueued = prometheus.NewDesc("stardetr_mqtt_queued_total",
		"Detection messages accepted into the on-disk queue.", nil, nil)
	descDropped = prometheus.NewDesc("stardetr_mqtt_dropped_total",
		"Messages dropped, by reason: queue_full (oldest first, mqtt.queue.max_mb), disk_full (state_dir file system), write_error (a queue or counter file could not be written), too_large, corrupt.",
		[]string{"reason"}, nil)
	descStatsSkipped = prometheus.NewDesc("stardetr_mqtt_stats_skipped_total",
		"Stats messages skipped while disconnected.", nil, nil)
	descDepth = prometheus.NewDesc("stardetr_mqtt_queue_messages",
		"Detection messages waiting in the on-disk queue.", nil, nil)
	descBytes = prometheus.NewDesc("stardetr_mqtt_queue_bytes",
		"Bytes of the on-disk queue.", nil, nil)
	descConnected = prometheus.NewDesc("stardetr_mqtt_connected",
		"1 while connected to a broker.", nil, nil)
	descAttempts = prometheus.NewDesc("stardetr_mqtt_connect_attempts_total",
		"Connection attempts (each tries every broker in order).", nil, nil)
	descFailures = prometheus.NewDesc("stardetr_mqtt_connect_failures_total",
		"Connection attempts that reached no broker.", nil, nil)
	descCorrupt = prometheus.NewDesc("stardetr_mqtt_corrupt_records_total",
		"Queued detection messages lost to records damaged on disk (each damaged record costs itself only).", nil, nil)
	descDegraded = prometheus.NewDesc("stardetr_mqtt_queue_degraded",
		"1 while the queue drops messages (queue at max_mb, or the file system full); see /healthz.", nil, nil)
	descNoSpace = prometheus.NewDesc("stardetr_mqtt_queue_no_space_total",
		"Messages refused because the state_dir file system was full and the queue had nothing left to free.", nil, nil)
	descPublishErrors = prometheus.NewDesc("stardetr_mqtt_publish_errors_total",
		"Sends that were not acknowledged and were retried from the queue.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p *Publisher) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descQueued, descDropped, descStatsSkipped,
		descDepth, descBytes, descConnected, descAttempts, descFailures, descPublishErrors,
		descCorrupt, descDegraded, descNoSpace} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *Publisher) Collect(ch chan<- prometheus.Metric) {
	m := p.Metrics()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descPublished, m.Published, "detections")
	counter(descPublished, m.StatsPublished, "stats")
	counter(descQueued, m.Queued)
	for r := range nDropReasons {
		counter(descDropped, p.drops[r].Load(), dropReasonNames[r])
	}
	counter(descStatsSkipped, m.StatsSkipped)
	counter(descAttempts, m.ConnectAttempts)
	counter(descFailures, m.ConnectFailures)
	counter(descPublishErrors, m.PublishErrors)
	counter(descCorrupt, m.Corrupt)
	counter(descNoSpace, m.NoSpace)
	degraded := 0.0
	if p.QueueHealth() != "" {
		degraded = 1
	}
	gauge(descDegraded, degraded)
	gauge(descDepth, float64(m.QueueDepth))
	gauge(descBytes, float64(m.QueueBytes))
	connected := 0.0
	if m.Connected {
		connected = 1
	}
	gauge(descConnected, connected)
}

var _ prometheus.Collector = (*Publisher)(nil)
