package yoloval

import (
	"cmp"
	"math"
	"slices"
)

// IoUThresholds are ultralytics' iouv, torch.linspace(0.5, 0.95, 10) in float32.
var IoUThresholds = func() [10]float32 {
	var t [10]float32
	for i := range t {
		t[i] = float32(0.5 + 0.05*float64(i))
	}
	return t
}()

// Pred is one detection in pixels of the original image.
type Pred struct {
	Class int
	Score float32
	XYXY  [4]float32
}

// Truth is one ground-truth object in pixels of the original image.
type Truth struct {
	Class int
	XYXY  [4]float32
}

// Stats accumulates per-detection hits over a val set, as ultralytics' DetectionValidator does.
type Stats struct {
	conf    []float32
	predCls []int
	tp      [][10]bool
	target  []int // class of every ground-truth object
	images  []map[int]bool
}

// Add scores one image: preds sorted by score, highest first (as RTDETRValidator.postprocess
// leaves them), against its ground truth.
func (s *Stats) Add(preds []Pred, truth []Truth) {
	seen := map[int]bool{}
	for _, t := range truth {
		s.target = append(s.target, t.Class)
		seen[t.Class] = true
	}
	s.images = append(s.images, seen)
	if len(preds) == 0 {
		return
	}
	tp := make([][10]bool, len(preds))
	if len(truth) > 0 {
		matchPredictions(preds, truth, tp)
	}
	for _, p := range preds {
		s.conf = append(s.conf, p.Score)
		s.predCls = append(s.predCls, p.Class)
	}
	s.tp = append(s.tp, tp...)
}

// boxIoU is ultralytics' box_iou for one pair, in float32 with its eps.
func boxIoU(a, b [4]float32) float32 {
	iw := min(a[2], b[2]) - max(a[0], b[0])
	ih := min(a[3], b[3]) - max(a[1], b[1])
	inter := max(iw, 0) * max(ih, 0)
	return inter / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter + 1e-7)
}

// matchPredictions is ultralytics' BaseValidator.match_predictions (use_scipy=False): per IoU
// threshold, the label-detection pairs of one class with IoU >= threshold, ordered by IoU
// (highest first); each detection keeps its best pair, then each label keeps, of the detections
// left to it, the one that comes first (the highest-scoring, preds being sorted).
func matchPredictions(preds []Pred, truth []Truth, tp [][10]bool) {
	iou := make([]float32, len(truth)*len(preds))
	for l, t := range truth {
		for d, p := range preds {
			if t.Class == p.Class {
				iou[l*len(preds)+d] = boxIoU(t.XYXY, p.XYXY)
			}
		}
	}
	type pair struct {
		l, d int
		iou  float32
	}
	var pairs []pair
	bestOfDet := make([]int, len(preds))
	for ti, thr := range IoUThresholds {
		pairs = pairs[:0]
		for l := range truth {
			for d := range preds {
				if v := iou[l*len(preds)+d]; v >= thr {
					pairs = append(pairs, pair{l, d, v})
				}
			}
		}
		if len(pairs) == 0 {
			continue
		}
		slices.SortStableFunc(pairs, func(a, b pair) int { return cmp.Compare(b.iou, a.iou) })
		// np.unique on the detection column: the first (best) pair of each detection, by detection.
		for i := range bestOfDet {
			bestOfDet[i] = -1
		}
		for i, p := range pairs {
			if bestOfDet[p.d] < 0 {
				bestOfDet[p.d] = i
			}
		}
		// np.unique on the label column of those, in detection order: the first detection per label.
		labelTaken := make([]bool, len(truth))
		for d, i := range bestOfDet {
			if i < 0 {
				continue
			}
			if l := pairs[i].l; !labelTaken[l] {
				labelTaken[l] = true
				tp[d][ti] = true
			}
		}
	}
}

// ClassResult is one class's row of the results.
type ClassResult struct {
	Class     int     `json:"class_id"`
	Name      string  `json:"name"`
	Images    int     `json:"images"`    // images with at least one object of the class
	Instances int     `json:"instances"` // objects of the class
	P         float64 `json:"precision"`
	R         float64 `json:"recall"`
	MAP50     float64 `json:"map50"`
	MAP5095   float64 `json:"map50_95"`
}

// Results are ultralytics' metrics: the mean over the classes that have labels, and each of them.
type Results struct {
	Images    int           `json:"images"`
	Instances int           `json:"instances"`
	P         float64       `json:"precision"`
	R         float64       `json:"recall"`
	MAP50     float64       `json:"map50"`
	MAP5095   float64       `json:"map50_95"`
	Classes   []ClassResult `json:"classes"`
}

// Results computes ultralytics' ap_per_class and Metric.mean_results; names label the classes.
func (s *Stats) Results(names []string) Results {
	res := Results{Images: len(s.images), Instances: len(s.target)}
	order := s.confOrder()
	counts, classes := s.labelCounts()
	if len(classes) == 0 {
		return res
	}
	x := linspace(0, 1, 1000)
	curves := make([]classCurves, len(classes))
	for ci, c := range classes {
		curves[ci] = s.classCurves(order, c, counts[c], x)
	}
	best := bestF1(curves, len(x))
	for ci, c := range classes {
		cr := s.classResult(c, counts[c], curves[ci], best, names)
		res.Classes = append(res.Classes, cr)
		res.P += cr.P
		res.R += cr.R
		res.MAP50 += cr.MAP50
		res.MAP5095 += cr.MAP5095
	}
	n := float64(len(classes))
	res.P, res.R, res.MAP50, res.MAP5095 = res.P/n, res.R/n, res.MAP50/n, res.MAP5095/n
	return res
}

// eps is ultralytics' guard against a division by zero in recall and F1.
const eps = 1e-16

// confOrder is np.argsort(-conf): the detections, most confident first (stable on ties).
func (s *Stats) confOrder() []int {
	order := make([]int, len(s.conf))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(s.conf[b], s.conf[a]) })
	return order
}

// labelCounts counts the ground-truth objects of each class; classes are those with labels,
// ascending (np.unique of the targets).
func (s *Stats) labelCounts() (counts map[int]int, classes []int) {
	counts = map[int]int{}
	for _, c := range s.target {
		counts[c]++
	}
	classes = make([]int, 0, len(counts))
	for c := range counts {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	return counts, classes
}

// classCurves is one class's precision and recall on the confidence grid (at IoU 0.5) and its
// AP at each of IoUThresholds.
type classCurves struct {
	p, r []float64
	ap   [10]float64
}

// classCurves computes class c's curves over the detections in confidence order, nl being
// its number of labels and x the confidence grid; a class without detections has all zeros.
func (s *Stats) classCurves(order []int, c, nl int, x []float64) classCurves {
	cc := classCurves{p: make([]float64, len(x)), r: make([]float64, len(x))}
	var idx []int
	for _, i := range order {
		if s.predCls[i] == c {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || nl == 0 {
		return cc
	}
	negConf := make([]float64, len(idx))
	for k, i := range idx {
		negConf[k] = -float64(s.conf[i])
	}
	var recall, precision [10][]float64
	for j := range 10 {
		recall[j] = make([]float64, len(idx))
		precision[j] = make([]float64, len(idx))
		tpc, fpc := 0.0, 0.0
		for k, i := range idx {
			if s.tp[i][j] {
				tpc++
			} else {
				fpc++
			}
			recall[j][k] = tpc / (float64(nl) + eps)
			precision[j][k] = tpc / (tpc + fpc)
		}
	}
	for k, xv := range x {
		cc.r[k] = interp(-xv, negConf, recall[0], 0, recall[0][len(idx)-1])
		cc.p[k] = interp(-xv, negConf, precision[0], 1, precision[0][len(idx)-1])
	}
	for j := range 10 {
		cc.ap[j] = computeAP(recall[j], precision[j])
	}
	return cc
}

// bestF1 is the index on the confidence grid (of n points) of the highest mean F1 over the
// classes, smoothed: ultralytics reports precision and recall at that confidence.
func bestF1(curves []classCurves, n int) int {
	f1 := make([]float64, n)
	for k := range f1 {
		for _, cc := range curves {
			p, r := cc.p[k], cc.r[k]
			f1[k] += 2 * p * r / (p + r + eps)
		}
		f1[k] /= float64(len(curves))
	}
	return argmax(smooth(f1, 0.1))
}

// classResult is class c's row: precision and recall at grid index best, its mAPs, and the
// images that hold it; nl is its number of labels.
func (s *Stats) classResult(c, nl int, cc classCurves, best int, names []string) ClassResult {
	cr := ClassResult{Class: c, Instances: nl, P: cc.p[best], R: cc.r[best], MAP50: cc.ap[0]}
	if c < len(names) {
		cr.Name = names[c]
	}
	for _, img := range s.images {
		if img[c] {
			cr.Images++
		}
	}
	for j := range 10 {
		cr.MAP5095 += cc.ap[j]
	}
	cr.MAP5095 /= 10
	return cr
}

// computeAP is ultralytics' compute_ap: precision envelope, then COCO's 101-point interpolation
// integrated with the trapezoidal rule.
func computeAP(recall, precision []float64) float64 {
	n := len(recall)
	mrec := make([]float64, n+2)
	mpre := make([]float64, n+2)
	mrec[0], mpre[0] = 0, 1
	copy(mrec[1:], recall)
	copy(mpre[1:], precision)
	mrec[n+1], mpre[n+1] = 1, 0
	for i := n; i >= 0; i-- {
		mpre[i] = math.Max(mpre[i], mpre[i+1])
	}
	x := linspace(0, 1, 101)
	y := make([]float64, len(x))
	for i, xv := range x {
		y[i] = interp(xv, mrec, mpre, mpre[0], mpre[n+1])
	}
	area := 0.0
	for i := 1; i < len(x); i++ {
		area += (x[i] - x[i-1]) * (y[i] + y[i-1]) / 2
	}
	return area
}

// interp is numpy's interp for one point: xp non-decreasing; left/right outside; at a run of
// equal xp the last of the run is the segment's start, as numpy's binary search finds it.
func interp(x float64, xp, fp []float64, left, right float64) float64 {
	n := len(xp)
	switch {
	case x < xp[0]:
		return left
	case x > xp[n-1]:
		return right
	case x == xp[n-1]:
		return fp[n-1]
	}
	j := sortSearchUpper(xp, x) - 1 // last index with xp[j] <= x; j < n-1 here
	slope := (fp[j+1] - fp[j]) / (xp[j+1] - xp[j])
	v := slope*(x-xp[j]) + fp[j]
	if math.IsNaN(v) {
		v = slope*(x-xp[j+1]) + fp[j+1]
		if math.IsNaN(v) && fp[j] == fp[j+1] {
			v = fp[j]
		}
	}
	return v
}

// sortSearchUpper returns the number of elements of the non-decreasing xp that are <= x.
func sortSearchUpper(xp []float64, x float64) int {
	lo, hi := 0, len(xp)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if xp[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// linspace is numpy's linspace(start, stop, n) with the endpoint.
func linspace(start, stop float64, n int) []float64 {
	out := make([]float64, n)
	step := (stop - start) / float64(n-1)
	for i := range out {
		out[i] = start + float64(i)*step
	}
	out[n-1] = stop
	return out
}

// smooth is ultralytics' box filter of fraction f, padding with the end values.
func smooth(y []float64, f float64) []float64 {
	nf := int(math.RoundToEven(float64(len(y))*f*2))/2 + 1
	pad := nf / 2
	yp := make([]float64, 0, len(y)+2*pad)
	for range pad {
		yp = append(yp, y[0])
	}
	yp = append(yp, y...)
	for range pad {
		yp = append(yp, y[len(y)-1])
	}
	out := make([]float64, len(yp)-nf+1)
	for i := range out {
		sum := 0.0
		for k := range nf {
			sum += yp[i+k] / float64(nf)
		}
		out[i] = sum
	}
	return out
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
