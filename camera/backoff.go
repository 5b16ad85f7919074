package camera

import (
	"math/rand/v2"
	"time"
)

// defaultBackoff is the wait before each retry, in order; the last step repeats. Each wait
// is jittered by ±20% so that cameras behind one failed switch do not retry in lockstep.
var defaultBackoff = [...]time.Duration{
	1 * time.Second, 1 * time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second,
}

// backoffResetAfter: a session that streamed this long starts the schedule over.
const backoffResetAfter = 10 * time.Second

// backoff walks a stepped retry schedule with jitter.
type backoff struct {
	steps  []time.Duration
	jitter float64 // fraction, 0.2 = ±20%
	next   int
	rnd    *rand.Rand
}

func newBackoff(steps []time.Duration, seed uint64) *backoff {
	return &backoff{steps: steps, jitter: 0.2, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// delay returns the next wait and advances the schedule.
func (b *backoff) delay() time.Duration {
	d := b.steps[min(b.next, len(b.steps)-1)]
	if b.next < len(b.steps) {
		b.next++
	}
	f := 1 + b.jitter*(2*b.rnd.Float64()-1)
	return time.Duration(float64(d) * f)
}

func (b *backoff) reset() { b.next = 0 }
