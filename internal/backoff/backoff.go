// Package backoff is stardetr's one retry schedule, used by every reconnect loop (cameras, the
// MQTT connection): stepped waits whose last step repeats, each jittered by ±20% so that
// clients behind one failed switch or broker do not retry in lockstep, and Reset once the
// thing retried has worked.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Default is the schedule of cameras and brokers: quick first retries for a blip, then
// slower ones for an outage, at most about every 30 s.
var Default = []time.Duration{
	1 * time.Second, 1 * time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second,
}

// ResetAfter is how long a connection (a camera's stream, the broker's session) must have
// worked for the schedule to start over when it ends: one that keeps failing sooner (a broker
// that drops a client whose id another client took, a camera that hangs up after a frame)
// walks the schedule instead of retrying at full speed.
const ResetAfter = 10 * time.Second

// jitter is the fraction each wait varies by.
const jitter = 0.2

// Schedule walks steps. It is not safe for concurrent use: one reconnect loop owns one.
type Schedule struct {
	steps []time.Duration
	next  int
	rnd   *rand.Rand
}

// New returns a schedule over steps (Default when empty); seed makes the jitter reproducible
// in tests and different between clients.
func New(steps []time.Duration, seed uint64) *Schedule {
	if len(steps) == 0 {
		steps = Default
	}
	return &Schedule{steps: steps, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next returns the wait before the next attempt and advances the schedule.
func (b *Schedule) Next() time.Duration {
	d := b.steps[min(b.next, len(b.steps)-1)]
	if b.next < len(b.steps) {
		b.next++
	}
	return time.Duration(float64(d) * (1 + jitter*(2*b.rnd.Float64()-1)))
}

// Reset starts the schedule over, after an attempt that worked.
func (b *Schedule) Reset() { b.next = 0 }
