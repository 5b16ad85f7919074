package track_test

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/track"
)

// circle returns n corners on a circle: a simple polygon, so that only the cap can refuse it.
func circle(n int) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		a := 2 * math.Pi * float64(i) / float64(n)
		out[i] = []float64{0.5 + 0.4*math.Cos(a), 0.5 + 0.4*math.Sin(a)}
	}
	return out
}

// Issue 23, finding 9: a 200,000-corner zone took `stardetr check` 248 s (every edge against
// every other). Zones are capped at track.MaxPolygonPoints corners: one error naming the key
// and the cap, before any corner is compared.
func TestPolygonCornersAreCapped(t *testing.T) {
	ok := track.Zones{{Name: "a", Polygon: circle(track.MaxPolygonPoints), Inertia: 1}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("%d corners: %v", track.MaxPolygonPoints, err)
	}
	for _, n := range []int{track.MaxPolygonPoints + 1, 200000} {
		zs := track.Zones{{Name: "a", Polygon: circle(n), Inertia: 1}}
		err := zs.Validate()
		testenv.WantError(t, err, "zones[0].polygon: has "+strconv.Itoa(n)+" corners: at most 1000")
		if strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("%d corners: want one problem, got %v", n, err)
		}
	}
}
