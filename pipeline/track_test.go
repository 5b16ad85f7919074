package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/pipeline"
	"github.com/stardetr/stardetr/track"
)

// eventRecorder is a Publisher that also takes tracking outcomes.
type eventRecorder struct {
	recorder
	mu     sync.Mutex
	types  []string
	counts []track.Count
	frames int // calls that came with a picture
}

func (r *eventRecorder) Publish(m *pipeline.Message) error {
	c := *m
	c.Detections = slices.Clone(m.Detections)
	r.recorder.mu.Lock()
	defer r.recorder.mu.Unlock()
	r.msgs = append(r.msgs, c)
	return nil
}

func (r *eventRecorder) PublishTracked(t *pipeline.Tracked) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range t.Events {
		r.types = append(r.types, e.Type)
	}
	r.counts = append(r.counts, t.Counts...)
	if len(t.Best) > 0 && !t.Frame.Empty() {
		r.frames++
	}
	return nil
}

func (r *eventRecorder) snapshotEvents() ([]string, []track.Count, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.types), slices.Clone(r.counts), r.frames
}

// A tracking camera: its messages carry track ids (the detector's one box keeps one id even
// on the frames where it scores low), events go to the event publisher whatever the publish
// policy, the best frames come with their picture, and shutdown ends the track.
func TestTrackingCamera(t *testing.T) {
	det := &slowDetector{}
	rec := &eventRecorder{}
	p := pipeline.New([]pipeline.Slot{pipeline.OneFrame(det)}, rec, pipeline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := track.DefaultConfig()
	cfg.Enabled = true
	cfg.MinHits = 1 // the detector's box scores high only every other frame: a tentative track would never see min_hits high frames in a row
	err := p.Update([]pipeline.Camera{{Name: "cam", Key: "1", Source: fileSource(t, "cam", camera.PaceFast),
		Policy: pipeline.Policy{Mode: pipeline.PolicyEvery, MinScore: 0.5}, Scene: track.NewScene(cfg, nil, []string{"thing"})}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "20 messages", 20*time.Second, func() bool { return len(rec.snapshot()) >= 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tracked := 0
	for i, m := range rec.snapshot() {
		for _, d := range m.Detections {
			id := d.TrackID
			if id != 0 && id != 1 {
				t.Fatalf("message %d: track id %d; one box is one track", i, id)
			}
			if id == 1 {
				tracked++
			}
		}
	}
	if tracked < 10 {
		t.Errorf("%d detections carried the track id", tracked)
	}
	types, counts, frames := rec.snapshotEvents()
	if !slices.Equal(types, []string{"new", "end"}) {
		t.Errorf("events %v, want [new end]: the low-score frames keep the track, shutdown ends it", types)
	}
	want := []track.Count{{Zone: "all", Label: "thing", N: 0}, {Zone: "all", Label: "thing", N: 1}, {Zone: "all", Label: "thing", N: 0}}
	if !slices.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if frames == 0 {
		t.Error("no best frame came with its picture")
	}
}
