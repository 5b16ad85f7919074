package model

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/stardetr/stardetr/model/internal/onnxpb"
	"github.com/stardetr/stardetr/model/internal/pyliteral"
)

// Tensor names of the ultralytics export contract (the README, "Your own model").
const (
	InputName  = "images"
	OutputName = "output0"
)

// modelSpec is what stardetr runs: resolved from the graph, its metadata and the config in
// one pass (inspectModel), completed by one run when the graph leaves the output symbolic
// (Detector.resolveOutput). The output contract is checked in one place, checkOutputShape.
type modelSpec struct {
	height, width int
	dynamicBatch  bool // the input's batch axis is symbolic: Batch can run several frames
	queries       int  // -1: known after the first run
	nc            int  // -1: known after the first run
	metaNames     map[int]string
	metaNC        int // classes the metadata names (highest id + 1); -1 when it names none
	stride        int
	task          string
	carafeNodes   int
	hasMMCV       bool // any node in, or opset import of, the mmcv domain
	quantized     bool // QDQ or QLinear/Integer nodes: int8 kernels, which need prepacked weights
	metaH, metaW  int  // metadata 'imgsz'
}

// inspectModel checks that m is an RT-DETR-style detector and resolves its input size.
// Every error says what was found and what is expected.
func inspectModel(m *onnxpb.Model, cfg *Config) (*modelSpec, error) {
	s := &modelSpec{queries: -1, nc: -1, metaNC: -1}
	if err := s.readMetadata(m.Metadata); err != nil {
		return nil, err
	}
	if s.task != "" && s.task != "detect" {
		return nil, fmt.Errorf("model task is %q (metadata 'task'); stardetr runs detect models (RT-DETR)", s.task)
	}
	s.readNodes(m)
	in, err := findInput(m.Inputs)
	if err != nil {
		return nil, err
	}
	if err := s.checkInput(in, cfg); err != nil {
		return nil, err
	}
	out, err := findOutput(m.Outputs)
	if err != nil {
		return nil, err
	}
	if out.HasShape {
		if err := s.checkOutputShape(out.Dims, s.metaNC, false); err != nil {
			return nil, err
		}
	}
	if s.nc < 0 && s.metaNC > 0 {
		s.nc = s.metaNC
	}
	return s, nil
}

// readNodes records what the graph's nodes need: the CARAFE plugin, int8 kernels.
func (s *modelSpec) readNodes(m *onnxpb.Model) {
	_, hasOpset := m.Opsets["mmcv"]
	s.carafeNodes = m.Domains["mmcv"]
	s.hasMMCV = s.carafeNodes > 0 || hasOpset
	for op := range m.OpTypes {
		if op == "DequantizeLinear" || op == "QuantizeLinear" || strings.HasPrefix(op, "QLinear") || strings.HasSuffix(op, "Integer") {
			s.quantized = true
		}
	}
}

// findInput returns the model's one input, InputName, float32 of rank 4.
func findInput(inputs []onnxpb.Value) (*onnxpb.Value, error) {
	var in *onnxpb.Value
	names := make([]string, 0, len(inputs))
	for i := range inputs {
		names = append(names, fmt.Sprintf("%q %s", inputs[i].Name, dimsString(inputs[i])))
		if inputs[i].Name == InputName {
			in = &inputs[i]
		}
	}
	if in == nil || len(inputs) != 1 {
		return nil, fmt.Errorf("model inputs are [%s]; expected one input %q float32 [N,3,H,W] (ultralytics export)", strings.Join(names, ", "), InputName)
	}
	if in.ElemType != 1 {
		return nil, fmt.Errorf("input %q is %s; expected float32 (export without half=True)", InputName, onnxpb.ElemTypeName(in.ElemType))
	}
	if !in.HasShape || len(in.Dims) != 4 {
		return nil, fmt.Errorf("input %q has shape %s; expected rank 4 [N,3,H,W]", InputName, dimsString(*in))
	}
	return in, nil
}

// checkInput checks the input's batch and channel axes and resolves its size: fixed in the
// graph, else model.imgsz, else the metadata's imgsz; a multiple of the stride.
func (s *modelSpec) checkInput(in *onnxpb.Value, cfg *Config) error {
	if in.Dims[0] > 1 {
		return fmt.Errorf("input %q has a fixed batch of %d; stardetr runs one frame at a time: export with batch=1 or a dynamic batch", InputName, in.Dims[0])
	}
	s.dynamicBatch = in.Dims[0] < 0
	if in.Dims[1] != 3 && in.Dims[1] != -1 {
		return fmt.Errorf("input %q has %d channels; expected 3 (RGB)", InputName, in.Dims[1])
	}
	ch, cw := cfg.imgsz()
	switch {
	case in.Dims[2] > 0 && in.Dims[3] > 0:
		s.height, s.width = int(in.Dims[2]), int(in.Dims[3])
		if ch != 0 && (ch != s.height || cw != s.width) {
			return fmt.Errorf("model.imgsz is [%d, %d] but the model's input %q is fixed at %dx%d (HxW): remove model.imgsz or re-export at that size", ch, cw, InputName, s.height, s.width)
		}
	case in.Dims[2] > 0 || in.Dims[3] > 0:
		return fmt.Errorf("input %q has shape %s: one spatial axis fixed, one dynamic; expected both fixed or both dynamic", InputName, dimsString(*in))
	case ch != 0:
		s.height, s.width = ch, cw
	case s.metaH > 0:
		s.height, s.width = s.metaH, s.metaW
	default:
		return fmt.Errorf("input %q has dynamic height and width %s and the model has no 'imgsz' metadata: set model.imgsz", InputName, dimsString(*in))
	}
	if s.stride > 0 && (s.height%s.stride != 0 || s.width%s.stride != 0) {
		return fmt.Errorf("input size %dx%d (HxW) is not a multiple of the model's stride %d: use a multiple of %d in model.imgsz", s.height, s.width, s.stride, s.stride)
	}
	return nil
}

// findOutput returns the model's output OutputName, float32 or of unknown type.
func findOutput(outputs []onnxpb.Value) (*onnxpb.Value, error) {
	var out *onnxpb.Value
	names := make([]string, 0, len(outputs))
	for i := range outputs {
		names = append(names, fmt.Sprintf("%q %s", outputs[i].Name, dimsString(outputs[i])))
		if outputs[i].Name == OutputName {
			out = &outputs[i]
		}
	}
	if out == nil {
		return nil, fmt.Errorf("model outputs are [%s]; expected %q float32 [N,queries,4+nc] (ultralytics RT-DETR export)", strings.Join(names, ", "), OutputName)
	}
	if out.ElemType != 0 && out.ElemType != 1 {
		return nil, fmt.Errorf("output %q is %s; expected float32", OutputName, onnxpb.ElemTypeName(out.ElemType))
	}
	return out, nil
}

// checkOutputShape is the output contract, [N, queries, 4+nc], for the graph's declared shape
// (symbolic axes allowed) and for the shape of a run's output (ran: every axis known). wantNC
// is the number of classes known so far (-1 none). It records what the shape fixes.
func (s *modelSpec) checkOutputShape(dims []int64, wantNC int, ran bool) error {
	if len(dims) != 3 {
		return fmt.Errorf("output %q has shape %s (rank %d); expected rank 3 [N,queries,4+nc] (an RT-DETR detector)", OutputName, shapeString(dims), len(dims))
	}
	if dims[0] > 1 {
		return fmt.Errorf("output %q has a fixed batch of %d; expected 1 or dynamic", OutputName, dims[0])
	}
	last := dims[2]
	if last > 0 {
		if last < 5 {
			return fmt.Errorf("output %q has shape %s: last dimension %d; expected 4 box values + at least 1 class score", OutputName, shapeString(dims), last)
		}
		if wantNC > 0 && int(last) != 4+wantNC {
			hint := ""
			if dims[1] > 0 && int(dims[1]) == 4+wantNC {
				hint = ": this looks like a YOLO output [N,4+nc,anchors], not RT-DETR's [N,queries,4+nc]"
			}
			return fmt.Errorf("output %q has shape %s but the metadata names %d classes, so the last dimension should be 4+%d=%d%s",
				OutputName, shapeString(dims), wantNC, wantNC, 4+wantNC, hint)
		}
		s.nc = int(last) - 4
	}
	if dims[1] > 0 {
		s.queries = int(dims[1])
	}
	if ran && (dims[1] <= 0 || dims[2] <= 4) {
		return fmt.Errorf("output %q has shape %v after a run; expected [1,queries,4+nc]", OutputName, dims)
	}
	return nil
}

// readMetadata reads the ultralytics metadata stardetr uses: task, and the Python literals
// stride, imgsz and names, each parsed once here (errors in that order).
func (s *modelSpec) readMetadata(md map[string]string) error {
	if v, ok := md["task"]; ok {
		s.task = strings.Trim(strings.TrimSpace(v), `'"`)
	}
	for _, key := range [...]string{"stride", "imgsz", "names"} {
		v, ok := md[key]
		if !ok {
			continue
		}
		lit, perr := pyliteral.Parse(v)
		var err error
		switch key {
		case "stride":
			s.stride, err = metaStride(v, lit, perr)
		case "imgsz":
			s.metaH, s.metaW, err = metaImgsz(v, lit, perr)
		case "names":
			s.metaNames, err = metaNames(v, lit, perr)
		}
		if err != nil {
			return err
		}
	}
	for id := range s.metaNames {
		s.metaNC = max(s.metaNC, id+1)
	}
	return nil
}

// metaStride reads metadata like `32`.
func metaStride(v string, lit any, perr error) (int, error) {
	i, isInt := lit.(int64)
	if perr != nil || !isInt || i <= 0 || i > 1024 {
		return 0, fmt.Errorf("model metadata 'stride' is %q; expected a positive integer such as 32", v)
	}
	return int(i), nil
}

// metaImgsz reads metadata like `[640, 640]` or `640`.
func metaImgsz(v string, lit any, perr error) (h, w int, err error) {
	bad := fmt.Errorf("model metadata 'imgsz' is %q; expected [height, width] or a size, such as [640, 640]", v)
	if perr != nil {
		return 0, 0, fmt.Errorf("%w (%v)", bad, perr)
	}
	switch x := lit.(type) {
	case int64:
		h, w = int(x), int(x)
	case []any:
		if len(x) != 2 {
			return 0, 0, bad
		}
		a, ok1 := x[0].(int64)
		b, ok2 := x[1].(int64)
		if !ok1 || !ok2 {
			return 0, 0, bad
		}
		h, w = int(a), int(b)
	default:
		return 0, 0, bad
	}
	if h <= 0 || w <= 0 || h > 16384 || w > 16384 {
		return 0, 0, bad
	}
	return h, w, nil
}

// metaNames reads metadata like `{0: 'person', 1: 'car'}` (a list of names is accepted too).
func metaNames(v string, lit any, perr error) (map[int]string, error) {
	bad := func(why string) error {
		return fmt.Errorf("model metadata 'names' is %s; expected a dict of class id to name such as {0: 'person', 1: 'car'}: %s", quoteShort(v), why)
	}
	if perr != nil {
		return nil, bad(perr.Error())
	}
	names := map[int]string{}
	switch x := lit.(type) {
	case pyliteral.Dict:
		for _, it := range x {
			id, ok := it.Key.(int64)
			if !ok || id < 0 || id > 1<<20 {
				return nil, bad(fmt.Sprintf("key %v is not a class id", it.Key))
			}
			name, ok := it.Value.(string)
			if !ok {
				return nil, bad(fmt.Sprintf("value for %d is not a string", id))
			}
			names[int(id)] = name
		}
	case []any:
		for i, it := range x {
			name, ok := it.(string)
			if !ok {
				return nil, bad(fmt.Sprintf("item %d is not a string", i))
			}
			names[i] = name
		}
	default:
		return nil, bad("not a dict")
	}
	if len(names) == 0 {
		return nil, bad("no classes")
	}
	return names, nil
}

// classes resolves, once the output is known, the label of every class id and the
// model.classes filter (nil keeps all).
func (s *modelSpec) classes(cfg *Config) (names []string, keep []bool, err error) {
	if names, err = classNames(s.nc, s.metaNames, cfg.Names); err != nil {
		return nil, nil, err
	}
	if len(cfg.Classes) > 0 {
		keep = make([]bool, s.nc)
		for _, id := range cfg.Classes {
			if id >= s.nc {
				return nil, nil, fmt.Errorf("model.classes: class id %d but the model has %d classes (ids 0..%d)", id, s.nc, s.nc-1)
			}
			keep[id] = true
		}
	}
	return names, keep, nil
}

// classNames lists the label of every class id below nc: the config's name, else the
// model's, else class<id>.
func classNames(nc int, meta, override map[int]string) ([]string, error) {
	var extra []int
	for id := range override {
		if id >= nc {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		sort.Ints(extra)
		return nil, fmt.Errorf("model.names has class id %d but the model has %d classes (ids 0..%d)", extra[0], nc, nc-1)
	}
	out := make([]string, nc)
	for i := range out {
		switch {
		case override[i] != "":
			out[i] = override[i]
		case meta[i] != "":
			out[i] = meta[i]
		default:
			out[i] = "class" + strconv.Itoa(i)
		}
	}
	return out, nil
}

func dimsString(v onnxpb.Value) string {
	if !v.HasShape {
		return "[unknown shape]"
	}
	parts := make([]string, len(v.Dims))
	for i, d := range v.Dims {
		switch {
		case d > 0:
			parts[i] = strconv.FormatInt(d, 10)
		case v.DimNames[i] != "":
			parts[i] = v.DimNames[i]
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func shapeString(dims []int64) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		if d > 0 {
			parts[i] = strconv.FormatInt(d, 10)
		} else {
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}
