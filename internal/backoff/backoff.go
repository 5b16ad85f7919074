// Package backoff is stardetr's one retry schedule and its one reset rule, used by every
// reconnect loop (a camera's Source.Run, the MQTT publisher's connectLoop): stepped waits
// whose last step repeats, each jittered by ±20% so that clients behind one failed switch or
// broker do not retry in lockstep.
//
// The reset rule: when an attempt ends, After is told how long it worked (a camera's span
// from first to last frame, an MQTT connection's time up; 0 for an attempt that never
// worked). One that worked at least ResetAfter starts the schedule over, and even then the
// next attempt waits the first step, never zero. Why one rule for both, and why not
// reconnect at once after a long session:
//   - what ends a long session is mostly the other side going away (a broker or camera that
//     restarts, a switch that reboots): it is rarely back within milliseconds, and every
//     client it dropped would otherwise come back in the same instant; the first step's
//     jittered second spreads them and costs nothing (MQTT messages wait in the disk queue,
//     a camera's next frame is what it is).
//   - a session that ends sooner than ResetAfter (a broker dropping this client for another
//     with the same client id, a camera that hangs up after one frame) walks the schedule
//     instead of retrying in a tight loop.
//
// Wait is the one place a loop waits out a retry, ending early when its context does.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Default is the schedule of cameras and brokers: quick first retries for a blip, then
// slower ones for an outage, at most about every 30 s.
var Default = []time.Duration{
	1 * time.Second, 1 * time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second,
}

// ResetAfter is how long an attempt (a camera's stream, the broker's session) must have
// worked for the schedule to start over when it ends.
const ResetAfter = 10 * time.Second

// jitter is the fraction each wait varies by.
const jitter = 0.2

// Schedule walks steps. It is not safe for concurrent use: one reconnect loop owns one.
type Schedule struct {
	steps      []time.Duration
	resetAfter time.Duration
	next       int
	rnd        *rand.Rand
}

// New returns a schedule over steps (Default when empty) that starts over after an attempt
// that worked resetAfter (ResetAfter when 0); seed makes the jitter reproducible in tests and
// different between clients.
func New(steps []time.Duration, resetAfter time.Duration, seed uint64) *Schedule {
	if len(steps) == 0 {
		steps = Default
	}
	if resetAfter <= 0 {
		resetAfter = ResetAfter
	}
	return &Schedule{steps: steps, resetAfter: resetAfter, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// After returns the wait before the next attempt, given how long the attempt that just ended
// worked (0: it never did), and advances the schedule: the package's one reset rule. reset
// says the attempt worked long enough for the schedule to start over.
func (b *Schedule) After(worked time.Duration) (wait time.Duration, reset bool) {
	reset = worked >= b.resetAfter
	if reset {
		b.next = 0
	}
	return b.Next(), reset
}

// Next returns the wait before the next attempt and advances the schedule.
func (b *Schedule) Next() time.Duration {
	d := b.steps[min(b.next, len(b.steps)-1)]
	if b.next < len(b.steps) {
		b.next++
	}
	return time.Duration(float64(d) * (1 + jitter*(2*b.rnd.Float64()-1)))
}

// Wait waits d, or less if ctx ends first; it reports whether the whole wait ran (false:
// ctx ended, stop retrying).
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
