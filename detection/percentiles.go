package detection

// Percentiles of one pipeline stage's latency over a recent window, in milliseconds: the
// pipeline measures them, the daemon hands them on, publish reports them on …/stats.
type Percentiles struct {
	P50, P90, P99, Max float64
}
