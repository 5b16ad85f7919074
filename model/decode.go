package model

import (
	"cmp"
	"slices"
)

// candidate is a query that passed the threshold, before sorting.
type candidate struct {
	score float32
	class int32
	query int32
}

// Decode turns the last Run's output into detections for a frame of frameW x frameH pixels,
// appended to out[:0], as ultralytics' RTDETRPredictor.postprocess does: per query the best
// class and its score; keep score > conf (and the class filter); sort by score, highest
// first (ties by query order); cut to max_det; cx,cy,w,h -> x1,y1,x2,y2 scaled by the frame.
func (in *Input) Decode(frameW, frameH int, out []Detection) []Detection {
	d := in.d
	nc := d.info.NumClasses
	stride := 4 + nc
	data := in.output.GetData()
	cands := in.cands[:0]
	for q := range d.info.Queries {
		row := data[q*stride : (q+1)*stride : (q+1)*stride]
		best, cls := row[4], 0
		for c := 1; c < nc; c++ {
			v := row[4+c]
			if v > best || v != v { // torch.max propagates NaN
				best, cls = v, c
				if v != v {
					break
				}
			}
		}
		if !(best > d.conf) {
			continue
		}
		if d.keep != nil && !d.keep[cls] {
			continue
		}
		cands = append(cands, candidate{best, int32(cls), int32(q)})
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.query, b.query)
	})
	if len(cands) > d.maxDet {
		cands = cands[:d.maxDet]
	}
	in.cands = cands
	fw, fh := float32(frameW), float32(frameH)
	out = out[:0]
	for _, c := range cands {
		row := data[int(c.query)*stride:]
		cx, cy := row[0], row[1]
		hw, hh := float32(row[2]/2), float32(row[3]/2)
		out = append(out, Detection{
			ClassID: int(c.class),
			Label:   d.info.Names[c.class],
			Score:   c.score,
			Box: [4]float32{
				float32(cx-hw) * fw, float32(cy-hh) * fh,
				float32(cx+hw) * fw, float32(cy+hh) * fh,
			},
		})
	}
	return out
}
