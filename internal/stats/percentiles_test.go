package stats_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stardetr/stardetr/internal/stats"
)

func TestFromSeconds(t *testing.T) {
	// 1 s … 101 s shuffled: rank round(q·100) of the sorted list is q·100 + 1 seconds.
	s := make([]float64, 101)
	for i := range s {
		s[i] = float64(i + 1)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	got := stats.FromSeconds(s)
	want := stats.Percentiles{P50: 51000, P90: 91000, P99: 100000, Max: 101000}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := stats.FromSeconds([]float64{0.0125}); got != (stats.Percentiles{P50: 12.5, P90: 12.5, P99: 12.5, Max: 12.5}) {
		t.Errorf("one sample: %+v", got)
	}
	if got := stats.FromSeconds(nil); got != (stats.Percentiles{}) {
		t.Errorf("no samples: %+v", got)
	}
}
