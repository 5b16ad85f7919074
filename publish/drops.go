package publish

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// dropReason is why a message was dropped: the reason label of stardetr_mqtt_dropped_total.
type dropReason int

const (
	dropQueueFull  dropReason = iota // the queue reached mqtt.queue.max_mb: its oldest messages went
	dropDiskFull                     // the state_dir file system was full
	dropWriteError                   // the queue or the counters could not be written (out of descriptors, I/O error, …)
	dropTooLarge                     // a message larger than the whole queue
	dropCorrupt                      // a queued message that no longer decodes
	nDropReasons
)

var dropReasonNames = [nDropReasons]string{"queue_full", "disk_full", "write_error", "too_large", "corrupt"}

// dropCounts counts dropped messages by reason.
type dropCounts [nDropReasons]atomic.Uint64

func (d *dropCounts) total() uint64 {
	var n uint64
	for i := range d {
		n += d[i].Load()
	}
	return n
}

// reasonOf says why a message that the queue or the counters refused with err was dropped.
func reasonOf(err error) dropReason {
	switch {
	case errors.Is(err, diskqueue.ErrNoSpace) || diskqueue.IsNoSpace(err):
		return dropDiskFull
	case errors.Is(err, diskqueue.ErrTooLarge):
		return dropTooLarge
	default:
		return dropWriteError
	}
}

// queueTrouble is the latest failure to write, sync or read the queue: /healthz reports the
// queue degraded, naming it, for degradedFor after it.
type queueTrouble struct {
	at   time.Time
	what string
}

// noteTrouble records a failure of the queue's files; what has one %v, for err.
func (p *Publisher) noteTrouble(what string, err error) {
	p.trouble.Store(&queueTrouble{at: time.Now(), what: fmt.Sprintf(what, err)})
}
