package track

import (
	"math"
	"slices"

	"github.com/stardetr/stardetr/detection"
)

// Detection is one object of a frame as the model found it (TrackID is not read).
type Detection = detection.Detection

type phase uint8

const (
	tentative phase = iota // not yet matched min_hits frames in a row
	tracked                // confirmed and matched in the last frame
	lost                   // confirmed, unmatched for 1..max_age frames
)

// object is one track. Objects are pooled by the tracker and reused.
type object struct {
	id     uint64 // 0 while tentative
	kf     kalman
	class  int
	label  string
	phase  phase
	hits   int // consecutive frames matched
	missed int // consecutive frames unmatched
	seen   bool
	box    [4]float32 // the latest matched detection's box
	score  float32    // the latest matched detection's score

	ev eventState
}

// tracker associates detections with tracks, ByteTrack style. Classes never mix: a pair of a
// track and a detection of another class is never allowed, so each class is tracked on its own.
type tracker struct {
	cfg    Config
	iouLow float64 // the second association's threshold
	nextID uint64
	objs   []*object
	free   []*object

	mt       matcher
	rows     []int // matcher row → index in objs
	cols     []int // matcher column → detection index
	rowCol   []int
	colBox   [][4]float32 // boxes of the columns, contiguous
	colClass []int
	keys     []uint64 // sort keys of the columns: left edge, then index
	sorted   []int
	high     []int
	low      []int
	detObj   []*object // per detection: the object it was matched to, or nil
	removed  []*object // objects that ended this frame, returned to the pool next frame
}

func newTracker(cfg Config) *tracker {
	return &tracker{cfg: cfg, iouLow: max(cfg.IOU, 0.5), nextID: 1}
}

// update advances every track by one frame of detections. Afterwards t.detObj[i] is the
// object detection i belongs to (nil if none) and t.removed lists the tracks that ended.
func (t *tracker) update(dets []Detection) {
	t.free = append(t.free, t.removed...)
	t.removed = t.removed[:0]
	t.detObj = grow(t.detObj, len(dets))
	clear(t.detObj)
	t.high, t.low = t.high[:0], t.low[:0]
	for i := range dets {
		switch s := float64(dets[i].Score); {
		case s >= t.cfg.High:
			t.high = append(t.high, i)
		case s >= t.cfg.Low:
			t.low = append(t.low, i)
		}
	}
	for _, o := range t.objs {
		o.seen = false
		o.kf.predict(o.phase == lost)
	}
	// 1: confirmed tracks (tracked or lost) with the high-score detections.
	t.associate(dets, t.high, t.cfg.IOU, func(o *object) bool { return o.phase != tentative })
	// 2: tracks seen in the last frame and still unmatched with the low-score detections,
	// at a stricter overlap: a low score is weak evidence.
	t.associate(dets, t.low, t.iouLow, func(o *object) bool { return o.phase == tracked && !o.seen })
	// 3: tentative tracks with the high-score detections left over.
	t.associate(dets, t.high, t.cfg.IOU, func(o *object) bool { return o.phase == tentative })

	kept := t.objs[:0]
	for _, o := range t.objs {
		switch {
		case o.seen:
			o.hits++
			o.missed = 0
			if o.phase == tentative && o.hits >= t.cfg.MinHits {
				o.id, t.nextID = t.nextID, t.nextID+1
			}
			if o.hits >= t.cfg.MinHits || o.phase != tentative {
				o.phase = tracked
			}
		case o.phase == tentative:
			t.removed = append(t.removed, o)
			continue
		default:
			o.hits = 0
			o.missed++
			o.phase = lost
			if o.missed > t.cfg.MaxAge {
				t.removed = append(t.removed, o)
				continue
			}
		}
		kept = append(kept, o)
	}
	clear(t.objs[len(kept):])
	t.objs = kept
	// Unmatched high-score detections start tracks.
	for _, i := range t.high {
		if t.detObj[i] != nil {
			continue
		}
		o := t.newObject()
		o.kf.init(dets[i].Box)
		o.class, o.label = dets[i].ClassID, dets[i].Label
		o.box, o.score = dets[i].Box, dets[i].Score
		o.hits, o.seen = 1, true
		if t.cfg.MinHits <= 1 {
			o.phase = tracked
			o.id, t.nextID = t.nextID, t.nextID+1
		}
		t.objs = append(t.objs, o)
		t.detObj[i] = o
	}
}

// sortable maps a float32 to a uint32 of the same order.
func sortable(f float32) uint32 {
	u := math.Float32bits(f)
	if u&(1<<31) != 0 {
		return ^u
	}
	return u | 1<<31
}

func (t *tracker) newObject() *object {
	var o *object
	if n := len(t.free); n > 0 {
		o, t.free = t.free[n-1], t.free[:n-1]
		ev := o.ev
		*o = object{}
		o.ev.reuse(&ev)
	} else {
		o = &object{}
	}
	return o
}

// associate matches the unmatched detections among idx with the unmatched objects that pass
// want, by IoU of the predicted box ≥ minIOU, minimising Σ(1 − IoU).
func (t *tracker) associate(dets []Detection, idx []int, minIOU float64, want func(*object) bool) {
	t.rows, t.cols = t.rows[:0], t.cols[:0]
	for i, o := range t.objs {
		if !o.seen && want(o) {
			t.rows = append(t.rows, i)
		}
	}
	for _, j := range idx {
		if t.detObj[j] == nil {
			t.cols = append(t.cols, j)
		}
	}
	if len(t.rows) == 0 || len(t.cols) == 0 {
		return
	}
	// The pairs are the tracker's hot spot (100 × 100 a frame). Columns sorted by their left
	// edge, with the widest box's width known, let each row visit only the columns whose
	// left edge lies within [row.x1 − widest, row.x2): the others cannot overlap it.
	t.keys = t.keys[:0]
	var widest float32
	for k, j := range t.cols {
		b := &dets[j].Box
		t.keys = append(t.keys, uint64(sortable(b[0]))<<32|uint64(k))
		widest = max(widest, b[2]-b[0])
	}
	slices.Sort(t.keys)
	t.colBox, t.colClass, t.sorted = t.colBox[:0], t.colClass[:0], t.sorted[:0]
	for _, key := range t.keys {
		j := t.cols[uint32(key)]
		t.sorted = append(t.sorted, j)
		t.colBox = append(t.colBox, dets[j].Box)
		t.colClass = append(t.colClass, dets[j].ClassID)
	}
	t.cols, t.sorted = t.sorted, t.cols
	t.mt.reset(len(t.rows), len(t.cols))
	for r, oi := range t.rows {
		o := t.objs[oi]
		pb := o.kf.box()
		lo, hi := 0, len(t.colBox) // first column with x1 > pb.x1 − widest
		for lo < hi {
			if mid := (lo + hi) / 2; t.colBox[mid][0] <= pb[0]-widest {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		for c := lo; c < len(t.colBox) && t.colBox[c][0] < pb[2]; c++ {
			b := &t.colBox[c]
			if b[2] <= pb[0] || t.colClass[c] != o.class {
				continue
			}
			if v := iou(pb, *b); v >= minIOU {
				t.mt.allow(r, c, 1-v)
			}
		}
	}
	t.rowCol = grow(t.rowCol, len(t.rows))
	t.mt.solve(t.rowCol)
	for r, c := range t.rowCol {
		if c < 0 {
			continue
		}
		o, j := t.objs[t.rows[r]], t.cols[c]
		o.kf.update(dets[j].Box)
		o.box, o.score, o.seen = dets[j].Box, dets[j].Score, true
		t.detObj[j] = o
	}
}
