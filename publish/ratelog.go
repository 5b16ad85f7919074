package publish

import (
	"sync"
	"time"
)

// logEvery is the most often one repeating condition (a full disk, a full queue, a failing
// fsync) is logged: at message rate it would flood the journal and the disk it fills.
const logEvery = 10 * time.Second

// logLimiter lets one log line through per interval and counts the ones it held back, so
// that the line that does get through can say how many there were.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now and, if so, how many calls were held back before it.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}
