package camera

import "time"

// SetBackoff replaces the retry schedule of s (tests only), so that tests of retry behaviour
// need not wait through the production schedule.
func SetBackoff(s *Source, steps ...time.Duration) { s.steps = steps }

// SetBackoffReset replaces how long a session must stream to start the schedule over.
func SetBackoffReset(s *Source, d time.Duration) { s.resetAfter = d }

// Backoff exposes the retry schedule with jitter for tests.
func Backoff(steps []time.Duration, seed uint64, n int) []time.Duration {
	b := newBackoff(steps, seed)
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = b.delay()
	}
	return out
}
