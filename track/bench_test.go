package track

import (
	"math"
	"syscall"
	"testing"
	"time"
)

// BenchmarkScene100 is one frame of tracker + zones + events at 100 detections of objects
// that stay in view (steady state: no new tracks), with three zones. Goal: ≤ 0.2 ms and 0
// allocations per frame.
func BenchmarkScene100(b *testing.B) {
	zones := Zones{
		{Name: "left", Polygon: [][]float64{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}, Inertia: 3},
		{Name: "bottom", Polygon: [][]float64{{0, 0.5}, {1, 0.5}, {1, 1}, {0, 1}}, Inertia: 3, Classes: []string{"person"}},
		{Name: "diamond", Polygon: [][]float64{{0.5, 0.1}, {0.9, 0.5}, {0.5, 0.9}, {0.1, 0.5}}, Inertia: 2, Loiter: time.Second},
	}
	if err := zones.Validate(); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	sc := NewScene(cfg, zones, []string{"person", "car"})
	const n = 100
	dets := make([]Detection, n)
	frame := func(f int) {
		for i := range dets {
			// A 10×10 grid of objects, each swinging left and right across its cell and a
			// neighbour's, so objects cross zone borders and change zones now and then.
			cx := 96 + float64(i%10)*192 + 120*math.Sin(float64(f)/15+float64(i))
			cy := 54 + float64(i/10)*108
			dets[i] = Detection{ClassID: i % 2, Label: [2]string{"person", "car"}[i%2], Score: 0.8,
				Box: [4]float32{float32(cx - 30), float32(cy - 40), float32(cx + 30), float32(cy + 40)}}
		}
	}
	t0 := time.Unix(1_800_000_000, 0)
	f := 0
	for ; f < 50; f++ { // warm up: confirm every track, size every buffer
		frame(f)
		sc.Update(t0.Add(time.Duration(f)*100*time.Millisecond), 1920, 1080, dets)
	}
	confirmed := 0
	for _, o := range sc.tr.objs {
		if o.id != 0 {
			confirmed++
		}
	}
	if confirmed != n {
		b.Fatalf("%d of %d objects confirmed after warm-up", confirmed, n)
	}
	b.ReportAllocs()
	events := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		frame(f)
		res := sc.Update(t0.Add(time.Duration(f)*100*time.Millisecond), 1920, 1080, dets)
		events += len(res.Events)
		f++
	}
	// The process's CPU time per frame, next to the wall time (ns/op): on a shared, loaded
	// machine the wall time also counts the time others held the CPU.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N)/1e3, "cpu-µs/frame")
	b.ReportMetric(float64(events)/float64(b.N), "events/frame")
	b.ReportMetric(float64(len(sc.tr.objs)), "tracks")
}

// cpuTime is the process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
