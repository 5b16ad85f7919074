// Package stats holds the statistics that travel between packages: the latency percentiles
// the pipeline measures and the publisher reports.
package stats

import "slices"

// Percentiles of one pipeline stage's latency over a recent window, in milliseconds: the
// pipeline measures them, the daemon hands them on, publish reports them on …/stats.
type Percentiles struct {
	P50, P90, P99, Max float64
}

// FromSeconds returns the percentiles, in milliseconds, of samples given in seconds, each the
// sample nearest its rank (index round(q·(n-1)) of the sorted samples); it sorts samples in
// place. No samples: all zero.
func FromSeconds(samples []float64) Percentiles {
	n := len(samples)
	if n == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	at := func(q float64) float64 { return 1000 * samples[int(q*float64(n-1)+0.5)] }
	return Percentiles{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: 1000 * samples[n-1]}
}
