package camera

import (
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// FramePoolSize is how many frames a running Source owns. The reader holds one while it
// reads; a consumer that holds all the others makes the source drop new frames (counted in
// State.Drops) rather than wait, so capture never blocks on the consumer. Six covers the
// pipeline's worst case per camera — the latest-frame hand-off, a preprocessed frame waiting
// for the model, the frame in inference and the snapshot frame — plus the reader and one spare,
// so that the newest frame always has a place.
const FramePoolSize = 6

// Frame is one captured image. Ownership: the sink given to Source.Run owns each frame it
// receives until it calls Release, exactly once; after that neither the frame nor its Mat
// may be touched. Frames and their Mats are reused, never allocated per frame.
type Frame struct {
	// Mat is the BGR image. Read it; do not Close it (Release does what is needed).
	Mat gocv.Mat
	// Seq numbers every frame the source read, from 1 and across reconnects; a gap means
	// frames dropped because the consumer held every frame.
	Seq uint64
	// Time is when the read of this frame returned (capture time).
	Time time.Time
	// Camera is the camera's name.
	Camera string

	pool *FramePool
	held atomic.Bool // true while out of the pool
}

// Release returns the frame to its source's pool. Releasing twice panics: it means two
// owners, and the second would read an image the source is overwriting.
func (f *Frame) Release() {
	if !f.held.CompareAndSwap(true, false) {
		panic("camera: Frame.Release called on a frame that is not held (released twice?)")
	}
	f.pool.put(f)
}

// FramePool is a fixed set of frames for a source to fill: the camera package's Source uses
// one, and so may any other source of frames (a test's synthetic camera). After Close,
// frames still held are freed on Release, so a consumer may keep a frame past the end of Run.
type FramePool struct {
	mu     sync.Mutex
	free   []*Frame
	closed bool
}

// NewFramePool makes n frames of the named camera, with empty Mats.
func NewFramePool(n int, camera string) *FramePool {
	p := &FramePool{free: make([]*Frame, 0, n)}
	for range n {
		p.free = append(p.free, &Frame{Mat: gocv.NewMat(), Camera: camera, pool: p})
	}
	return p
}

// Get takes a free frame, or returns nil when the consumer holds them all. The caller fills
// its Mat, Seq and Time and hands it on; whoever holds it last calls Release.
func (p *FramePool) Get() *Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.free)
	if n == 0 || p.closed {
		return nil
	}
	f := p.free[n-1]
	p.free = p.free[:n-1]
	f.held.Store(true)
	return f
}

func (p *FramePool) put(f *Frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		f.Mat.Close()
		return
	}
	p.free = append(p.free, f)
}

// Close frees the frames in the pool now and the held ones when they are released.
func (p *FramePool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, f := range p.free {
		f.Mat.Close()
	}
	p.free = nil
}
