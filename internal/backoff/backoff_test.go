package backoff_test

import (
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/backoff"
)

func TestSchedule(t *testing.T) {
	steps := []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}
	walk := func(seed uint64) []time.Duration {
		b := backoff.New(steps, seed)
		out := make([]time.Duration, 6)
		for i := range out {
			out[i] = b.Next()
		}
		return out
	}
	got := walk(1)
	for i, d := range got {
		base := steps[min(i, len(steps)-1)]
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("retry %d waits %v, want %v ±20%%", i, d, base)
		}
	}
	other := walk(2)
	same := true
	for i := range got {
		same = same && got[i] == other[i]
	}
	if same {
		t.Error("two seeds gave the same jitter")
	}
	b := backoff.New(steps, 3)
	b.Next()
	b.Next()
	b.Reset()
	if d := b.Next(); d > steps[0]*12/10 {
		t.Errorf("after Reset the wait is %v, want the first step %v ±20%%", d, steps[0])
	}
	if d := backoff.New(nil, 1).Next(); d > backoff.Default[0]*12/10 {
		t.Errorf("no steps: first wait %v, want Default's", d)
	}
}
