package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/backoff"
)

func TestSchedule(t *testing.T) {
	steps := []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}
	walk := func(seed uint64) []time.Duration {
		b := backoff.New(steps, 0, seed)
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
	// The reset rule: an attempt that worked less than resetAfter walks on; one that worked
	// resetAfter or more starts over, and the wait after it is the first step, never zero.
	b := backoff.New(steps, time.Minute, 3)
	b.Next()
	if d, reset := b.After(59 * time.Second); reset || d < steps[1]*8/10 || d > steps[1]*12/10 {
		t.Errorf("after a short session: wait %v (reset %v), want the next step %v ±20%%", d, reset, steps[1])
	}
	if d, reset := b.After(time.Minute); !reset || d < steps[0]*8/10 || d > steps[0]*12/10 {
		t.Errorf("after a long session: wait %v (reset %v), want the first step %v ±20%%", d, reset, steps[0])
	}
	if d, reset := b.After(0); reset || d < steps[1]*8/10 {
		t.Errorf("a failed attempt after the reset: wait %v (reset %v), want the second step %v", d, reset, steps[1])
	}
	if d := backoff.New(nil, 0, 1).Next(); d > backoff.Default[0]*12/10 {
		t.Errorf("no steps: first wait %v, want Default's", d)
	}
}

// Wait runs the whole wait, or returns false as soon as its context ends.
func TestWait(t *testing.T) {
	if !backoff.Wait(context.Background(), time.Millisecond) {
		t.Error("Wait without a cancel returned false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan bool, 1)
	go func() { done <- backoff.Wait(ctx, time.Hour) }()
	select {
	case ok := <-done:
		if ok {
			t.Error("Wait on an ended context returned true")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait on an ended context waited on")
	}
}
