package pipeline

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/stardetr/stardetr/detection"
)

// EventLimit bounds one camera's events to events.max_per_second. A detector whose boxes jump
// from frame to frame, with tracking that confirms and ends tracks at once, turned every frame
// into new and end events: 400 a second, each a queued MQTT message, a log line and a snapshot
// (issue 23). The limit is a bucket of one second's events (at least two), refilled at the
// rate:
//   - a new event costs two: its own and its end's, which is then always sent, so that every
//     object announced is also ended;
//   - an object whose new event finds fewer than two is not announced at all: its new, updates
//     and end are dropped (counted, reason "rate"), and it gets no snapshot;
//   - an update costs one; one that finds none waits, replacing the object's update that
//     waits already (counted, "coalesced"), and goes out when one is back, the longest-waiting
//     first; the object's end replaces a waiting update (counted, "coalesced"): the end carries
//     the latest state.
//
// So a camera sends on average at most max_per_second events. The pipeline's worker is its
// only user (Filter); its counters may be read from any goroutine.
type EventLimit struct {
	rate, burst float64
	tokens      float64
	last        time.Time // capture time of the last refill

	muted   map[uint64]struct{} // track ids whose new event was dropped
	waiting []detection.Event   // updates without a token, longest-waiting first; own copies
	out     []detection.Event
	best    []detection.Event

	sent    [3]atomic.Uint64 // by kind: new, update, end
	dropped [2]atomic.Uint64 // rate, coalesced
}

const (
	kindNew = iota
	kindUpdate
	kindEnd
)

var eventKinds = [3]string{detection.EventNew, detection.EventUpdate, detection.EventEnd}

// Reasons an event is dropped, the reason label of stardetr_events_dropped_total.
const (
	EventDropRate      = "rate"      // an object not announced for want of tokens: all its events
	EventDropCoalesced = "coalesced" // an update replaced by a later update or the end of its object
)

// NewEventLimit returns a limit of perSecond events (> 0) per second on average.
func NewEventLimit(perSecond float64) *EventLimit {
	burst := max(perSecond, 2)
	return &EventLimit{rate: perSecond, burst: burst, tokens: burst, muted: map[uint64]struct{}{}}
}

// Filter returns the events of a frame captured at now that the limit lets through (the
// waiting updates that may go now first) and the best-frame entries of the objects that were
// announced. The results are valid until the next Filter; events and best are not changed.
func (l *EventLimit) Filter(now time.Time, events, best []detection.Event) ([]detection.Event, []detection.Event) {
	l.refill(now)
	l.out = l.out[:0]
	n := 0
	for n < len(l.waiting) && l.tokens >= 1 {
		l.tokens--
		l.send(kindUpdate, l.waiting[n])
		n++
	}
	l.waiting = slices.Delete(l.waiting, 0, n)
	for _, ev := range events {
		_, muted := l.muted[ev.TrackID]
		switch ev.Type {
		case detection.EventNew:
			if l.tokens < 2 {
				l.muted[ev.TrackID] = struct{}{}
				l.dropped[0].Add(1)
				continue
			}
			l.tokens -= 2
			l.send(kindNew, ev)
		case detection.EventUpdate:
			switch i := l.waitingIndex(ev.TrackID); {
			case muted:
				l.dropped[0].Add(1)
			case i >= 0:
				l.waiting[i] = ownCopy(ev)
				l.dropped[1].Add(1)
			case l.tokens >= 1:
				l.tokens--
				l.send(kindUpdate, ev)
			default:
				l.waiting = append(l.waiting, ownCopy(ev))
			}
		case detection.EventEnd:
			if muted {
				delete(l.muted, ev.TrackID)
				l.dropped[0].Add(1)
				continue
			}
			if i := l.waitingIndex(ev.TrackID); i >= 0 {
				l.waiting = slices.Delete(l.waiting, i, i+1)
				l.dropped[1].Add(1)
			}
			l.send(kindEnd, ev) // paid for by its new event
		}
	}
	l.best = l.best[:0]
	for _, b := range best {
		if _, muted := l.muted[b.TrackID]; !muted {
			l.best = append(l.best, b)
		}
	}
	return l.out, l.best
}

// refill adds the tokens earned since the last frame; capture times that go backwards (a
// clock step) earn none.
func (l *EventLimit) refill(now time.Time) {
	if !l.last.IsZero() {
		if d := now.Sub(l.last).Seconds(); d > 0 {
			l.tokens = min(l.burst, l.tokens+d*l.rate)
		}
	}
	if now.After(l.last) {
		l.last = now
	}
}

func (l *EventLimit) send(kind int, ev detection.Event) {
	l.out = append(l.out, ev)
	l.sent[kind].Add(1)
}

func (l *EventLimit) waitingIndex(id uint64) int {
	for i := range l.waiting {
		if l.waiting[i].TrackID == id {
			return i
		}
	}
	return -1
}

// ownCopy copies ev's slices, which the scene reuses on its next Update.
func ownCopy(ev detection.Event) detection.Event {
	ev.Zones, ev.EnteredZones = slices.Clone(ev.Zones), slices.Clone(ev.EnteredZones)
	return ev
}

// Sent returns how many events of type typ (new, update, end) went through.
func (l *EventLimit) Sent(typ string) uint64 {
	for i, k := range eventKinds {
		if k == typ {
			return l.sent[i].Load()
		}
	}
	return 0
}

// Dropped returns how many events were dropped for reason (EventDropRate, EventDropCoalesced).
func (l *EventLimit) Dropped(reason string) uint64 {
	switch reason {
	case EventDropRate:
		return l.dropped[0].Load()
	case EventDropCoalesced:
		return l.dropped[1].Load()
	}
	return 0
}
