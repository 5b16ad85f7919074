package publish

import (
	"errors"
	"fmt"
	"time"

	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// PublishDetections numbers msg (per camera, persisted) and appends it to
// the disk queue; the sender delivers it in order once a broker is
// connected. It never waits for the network. When the queue (or the disk)
// is full the oldest queued messages are dropped, counted and logged; a
// message that cannot be stored (the disk full with nothing left to free,
// or a file of the queue or the counters that cannot be written) is dropped
// the same way and is not an error: the caller would log it once per message.
func (p *Publisher) PublishDetections(msg Detections) error {
	_, err := p.publishNumbered(msg.Camera, "detections", byte(p.cfg.QoS), func(seq uint64) ([]byte, error) {
		return encodeDetections(p.device, seq, &msg)
	})
	return err
}

// publishNumbered takes the camera's next seq, encodes the message with it and queues it on
// <camera>/<kind>, all under encMu so that seq order is queue order. queued is false for a
// message that was dropped (counted and logged) instead.
func (p *Publisher) publishNumbered(camera, kind string, qos byte, encode func(seq uint64) ([]byte, error)) (queued bool, err error) {
	if err := p.accepting("camera name", camera); err != nil {
		return false, err
	}
	p.encMu.Lock()
	defer p.encMu.Unlock()
	seq, err := p.seqs.take(camera)
	if err != nil && diskqueue.IsNoSpace(err) {
		// The counters need a few bytes now and then; on a full disk the queue gives up its
		// oldest segment for them, as it would for a message.
		if n := p.queue.Reclaim(); n > 0 {
			p.noteDrops(n, nil)
		}
		seq, err = p.seqs.take(camera)
	}
	if err != nil {
		// Without a number the message cannot go out (its number would be used again after a
		// crash): it is dropped like one the queue could not store.
		if diskqueue.IsNoSpace(err) {
			err = fmt.Errorf("%w: %w", diskqueue.ErrNoSpace, err)
		}
		p.noteDrops(0, fmt.Errorf("camera %s: %w", camera, err))
		return false, nil
	}
	payload, err := encode(seq)
	if err != nil {
		return false, fmt.Errorf("publish: camera %s %s seq %d: %w", camera, kind, seq, err)
	}
	if queued, err = p.enqueue(p.camPrefix+camera+"/"+kind, qos, false, payload); err != nil {
		return false, fmt.Errorf("publish: queue camera %s seq %d: %w", camera, seq, err)
	}
	return queued, nil
}

// enqueue appends one message to the disk queue, counting what overflow drops. A message
// that cannot be stored (the disk full with nothing left to free, a write that failed) is
// dropped and counted the same way, and is not an error: the caller would log it once per
// message. queued is false for such a message.
func (p *Publisher) enqueue(topic string, qos byte, retained bool, payload []byte) (queued bool, err error) {
	dropped, err := p.queue.Append(encodeRecord(topic, qos, retained, payload))
	if errors.Is(err, diskqueue.ErrClosed) {
		return false, ErrClosed // Close won the race with this call
	}
	if dropped > 0 || err != nil {
		p.noteDrops(dropped, err)
	}
	if errors.Is(err, diskqueue.ErrTooLarge) {
		return false, err // a message that could never fit: the caller's to fix
	}
	if err != nil {
		return false, nil // counted and logged (at most every logEvery) by noteDrops
	}
	p.queued.Add(1)
	return true, nil
}

// noteDrops counts messages the queue dropped (dropped oldest ones, plus the new one when
// err is set) by reason, marks the queue degraded and logs it at most once per logEvery,
// with counts. Callers hold encMu.
func (p *Publisher) noteDrops(dropped int, err error) {
	now := time.Now()
	st := p.queue.Stats()
	// Of the oldest messages dropped, those the queue gave up for a full file system.
	full := min(uint64(dropped), st.DroppedNoSpace-p.fullDropsSeen.Swap(st.DroppedNoSpace))
	p.drops[dropDiskFull].Add(full)
	p.drops[dropQueueFull].Add(uint64(dropped) - full)
	reason := dropQueueFull
	if err != nil {
		reason = reasonOf(err)
		p.drops[reason].Add(1)
	}
	if full > 0 || reason == dropDiskFull {
		p.lastDiskFull.Store(now.UnixNano())
	}
	p.lastDrop.Store(now.UnixNano())
	if reason == dropWriteError {
		p.noteTrouble("cannot store messages: %v: the message was dropped (stardetr_mqtt_dropped_total{reason=\"write_error\"})", err)
	}
	limiter := &p.dropLog
	if reason == dropWriteError {
		limiter = &p.writeErrLog
	}
	ok, _ := limiter.allow(now)
	if !ok {
		return
	}
	total := p.drops.total()
	since := total - p.droppedLogged.Swap(total)
	args := []any{"dropped_since_last_line", since, "dropped_total", total, "queue_limit_mb", p.cfg.Queue.MaxMB,
		"queued_messages", st.Records}
	switch {
	case err != nil && reason != dropDiskFull:
		p.log.Error("cannot queue messages: dropping them", append(args, "reason", dropReasonNames[reason], "err", err)...)
	case p.diskFullRecently(now):
		p.log.Warn("disk full: dropping the oldest queued messages to keep the newest; free space on the state_dir file system", append(args, "err", err)...)
	default:
		p.log.Warn("message queue full (mqtt.queue.max_mb): dropping the oldest messages", args...)
	}
}

// degradedFor is how long the queue counts as degraded after its last drop.
const degradedFor = 2 * logEvery

func (p *Publisher) diskFullRecently(now time.Time) bool {
	t := p.lastDiskFull.Load()
	return t != 0 && now.Sub(time.Unix(0, t)) < degradedFor
}

// QueueHealth says whether the queue keeps every message: "" when it does, otherwise why not
// (it dropped messages, or failed to write, sync or read its files, within the last 20 s).
func (p *Publisher) QueueHealth() string {
	now := time.Now()
	// A full file system first: it is also why the queue's other writes (the head, a sync)
	// fail while it lasts, and it is what to fix.
	if p.diskFullRecently(now) {
		return "degraded: dropping messages: the state_dir file system is full"
	}
	if tr := p.trouble.Load(); tr != nil && now.Sub(tr.at) < degradedFor {
		return "degraded: " + tr.what
	}
	if t := p.lastDrop.Load(); t != 0 && now.Sub(time.Unix(0, t)) < degradedFor {
		return "degraded: dropping the oldest messages: the queue is at mqtt.queue.max_mb"
	}
	return ""
}

// PublishStats publishes s on …/stats if a broker is connected; otherwise it
// is skipped (counted): stale stats are worth nothing.
func (p *Publisher) PublishStats(s Stats) error {
	p.mu.Lock()
	closed, connected := p.closed, p.link != nil
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !connected {
		p.statsSkipped.Add(1)
		return nil
	}
	qs := p.queue.Stats()
	payload, err := encodeStats(p.device, time.Now(), &s, wireQueue{
		Depth: qs.Records, Bytes: qs.Bytes, Dropped: p.drops.total(), Published: p.published.Load(),
	})
	if err != nil {
		return fmt.Errorf("publish: stats: %w", err)
	}
	p.client.Publish(p.statsTopic, byte(p.cfg.StatsQoS), false, payload)
	p.statsPublished.Add(1)
	return nil
}
