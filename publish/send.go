package publish

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

const (
	// window is how many queued messages may await their PUBACK at once.
	window = 64
	// syncInterval is the batch fsync period of the disk queue.
	syncInterval = 200 * time.Millisecond
)

type inflight struct {
	id    uint64
	topic string
	tok   mqtt.Token
}

// sendLoop is the only sender of queued messages: in queue order, at most
// window unacknowledged, each removed from the queue once the broker has it.
func (p *Publisher) sendLoop(ctx context.Context) {
	defer p.wg.Done()
	for {
		l, changed := p.currentLink()
		if l == nil {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		p.sendOn(ctx, l)
		if ctx.Err() != nil {
			return
		}
	}
}

// sendOn sends on one connection until it is lost, an error asks for a
// restart from the queue's head, or ctx is done.
func (p *Publisher) sendOn(ctx context.Context, l *link) {
	var (
		pending []inflight
		next    = p.queue.Head()
	)
	for {
		for len(pending) < window {
			r, ok, err := p.queue.ReadFrom(next, nil) // a fresh buffer: paho keeps the payload
			var corrupt *diskqueue.CorruptError
			if errors.As(err, &corrupt) {
				p.corrupt.Add(1)
				p.log.Warn("queued message corrupt on disk: skipped", "id", corrupt.ID, "segment", corrupt.Segment)
				continue
			}
			if err != nil {
				if !errors.Is(err, diskqueue.ErrClosed) {
					// Nothing is lost (the record stays queued) but delivery waits: degraded.
					p.noteTrouble("cannot read the message queue: %v: delivery waits and retries every second", err)
					if ok, n := p.readLog.allow(time.Now()); ok {
						p.log.Error("read queued message; retrying every second", "err", err, "repeats_not_logged", n)
					}
				}
				p.sleep(ctx, l, time.Second)
				return
			}
			if !ok {
				break
			}
			topic, qos, retained, payload, err := decodeRecord(r.Data)
			if err != nil {
				p.log.Error("corrupt queued message: dropped", "id", r.ID, "err", err)
				p.queue.Ack(r.ID)
				p.drops[dropCorrupt].Add(1)
				next = r.ID + 1
				continue
			}
			pending = append(pending, inflight{id: r.ID, topic: topic, tok: p.client.Publish(topic, qos, retained, payload)})
			next = r.ID + 1
		}
		if len(pending) == 0 {
			select {
			case <-p.queue.Notify():
				continue
			case <-l.lost:
				return
			case <-ctx.Done():
				return
			}
		}
		first := pending[0]
		select {
		case <-first.tok.Done():
		case <-l.lost:
			return
		case <-ctx.Done():
			return
		}
		if err := first.tok.Error(); err != nil {
			// Resend from the head (the unacknowledged ones may arrive twice).
			p.publishErrors.Add(1)
			p.log.Warn("publish not acknowledged; will resend", "err", err)
			p.sleep(ctx, l, 200*time.Millisecond)
			return
		}
		p.queue.Ack(first.id)
		p.published.Add(1)
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("published", "topic", first.topic, "queue_id", first.id)
		}
		pending[0] = inflight{}
		pending = pending[1:]
	}
}

func (p *Publisher) sleep(ctx context.Context, l *link, d time.Duration) {
	select {
	case <-time.After(d):
	case <-l.lost:
	case <-ctx.Done():
	}
}

// maintainLoop fsyncs the queue in batches and publishes periodic stats.
func (p *Publisher) maintainLoop(ctx context.Context) {
	defer p.wg.Done()
	sync := time.NewTicker(syncInterval)
	defer sync.Stop()
	var statsC <-chan time.Time
	if p.stats != nil && p.cfg.StatsInterval > 0 {
		t := time.NewTicker(p.cfg.StatsInterval)
		defer t.Stop()
		statsC = t.C
	}
	for {
		select {
		case <-sync.C:
			if err := p.queue.Sync(); err != nil && !errors.Is(err, diskqueue.ErrClosed) {
				// Nothing is lost while the process runs, but a power loss now would lose
				// more than the last syncInterval, or bring acknowledged messages back.
				p.noteTrouble("cannot sync the message queue to disk: %v: retried every 200 ms", err)
				if ok, n := p.syncLog.allow(time.Now()); ok {
					p.log.Error("sync message queue", "err", err, "repeats_not_logged", n)
				}
			}
		case <-statsC:
			if err := p.PublishStats(p.stats()); err != nil && !errors.Is(err, ErrClosed) {
				p.log.Warn("publish stats", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// Queue records: [qos][retained][2-byte topic length][topic][payload].
func encodeRecord(topic string, qos byte, retained bool, payload []byte) []byte {
	b := make([]byte, 0, 4+len(topic)+len(payload))
	var r byte
	if retained {
		r = 1
	}
	b = append(b, qos, r)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return append(b, payload...)
}

func decodeRecord(b []byte) (topic string, qos byte, retained bool, payload []byte, err error) {
	if len(b) < 4 {
		return "", 0, false, nil, errors.New("record shorter than its header")
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if len(b) < 4+n || b[0] > 2 {
		return "", 0, false, nil, errors.New("record header out of range")
	}
	return string(b[4 : 4+n]), b[0], b[1] == 1, b[4+n:], nil
}
