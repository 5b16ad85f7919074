package pipeline

import (
	"errors"
	"fmt"
	"slices"
)

// ErrTooManyViewers is returned by Watch when the camera has its maximum of live viewers.
var ErrTooManyViewers = errors.New("too many live viewers")

// Watch registers a live viewer of the camera: the returned channel receives (without the
// pipeline ever waiting for it) a signal after each processed frame, on which the viewer
// calls Snapshot. A camera nobody watches costs nothing extra. At most limit viewers per
// camera; stop unregisters the viewer.
func (p *Pipeline) Watch(name string, limit int) (next <-chan struct{}, stop func(), err error) {
	p.mu.Lock()
	cs, ok := p.cams[name]
	p.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("watch %q: %w", name, ErrNoCamera)
	}
	ch := make(chan struct{}, 1)
	cs.snapMu.Lock()
	defer cs.snapMu.Unlock()
	if len(cs.viewers) >= limit {
		return nil, nil, fmt.Errorf("watch %q: %w (%d)", name, ErrTooManyViewers, limit)
	}
	cs.viewers = append(cs.viewers, ch)
	if cs.snap != nil {
		ch <- struct{}{} // the current frame is the first to show
	}
	return ch, func() {
		cs.snapMu.Lock()
		cs.viewers = slices.DeleteFunc(cs.viewers, func(c chan struct{}) bool { return c == ch })
		cs.snapMu.Unlock()
	}, nil
}
