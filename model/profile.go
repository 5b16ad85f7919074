package model

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Profile is what ONNX Runtime's profiler recorded for a session (Config.ProfilePrefix): the
// kernel time of each op type and the arithmetic of the model, per run.
type Profile struct {
	Runs int
	// FLOPs per run of the matrix ops (Conv, MatMul, Gemm and their fused and quantized forms),
	// 2 per multiply-accumulate: ultralytics' GFLOPs convention plus the attention matmuls.
	FLOPs float64
	// Uncounted is the number of matrix-op nodes whose FLOPs the profile cannot tell:
	// ONNX Runtime leaves weights it prepacked (QLinearConv's) out of the recorded shapes.
	Uncounted int
	// Kernel is the summed kernel time per run; Ops breaks it down by op type, largest first.
	Kernel time.Duration
	Ops    []OpTime
	// Providers is the number of nodes that ran on each execution provider (ONNX Runtime's
	// names: CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider).
	Providers map[string]int
	// TensorRTEngines is the number of TensorRT engines the session ran: ONNX Runtime's TensorRT
	// provider runs each subgraph TensorRT took as one fused node of op type
	// "TRTKernel_graph_<graph>_<hash>_<n>" with one engine; its other nodes (memory copies) are
	// not engines.
	TensorRTEngines int
}

// TensorRTProviderName is ONNX Runtime's name of its TensorRT execution provider.
const TensorRTProviderName = "TensorrtExecutionProvider"

// OpTime is the kernel time per run of one op type and how many nodes of it ran.
type OpTime struct {
	Op    string
	Nodes int
	Time  time.Duration
}

// Share is op's fraction of the kernel time (0 when it did not run).
func (p *Profile) Share(op string) float64 {
	for _, o := range p.Ops {
		if o.Op == op && p.Kernel > 0 {
			return float64(o.Time) / float64(p.Kernel)
		}
	}
	return 0
}

// profileEvent is one entry of ONNX Runtime's Chrome-trace profile: for a node's kernel,
// name "<node>_kernel_time", dur in µs, and the op type and tensor shapes in args.
type profileEvent struct {
	Cat  string `json:"cat"`
	Name string `json:"name"`
	Dur  int64  `json:"dur"`
	Args struct {
		Op       string               `json:"op_name"`
		Provider string               `json:"provider"`
		Inputs   []map[string][]int64 `json:"input_type_shape"`
		Output   []map[string][]int64 `json:"output_type_shape"`
	} `json:"args"`
}

// ReadProfile parses the profile file ONNX Runtime wrote when a session with ProfilePrefix
// closed; times and FLOPs are per run, the runs counted from its model_run events.
func ReadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the ONNX Runtime profile: %w", err)
	}
	var events []profileEvent
	if err := json.Unmarshal(b, &events); err != nil {
		return nil, fmt.Errorf("ONNX Runtime profile %s: %w", path, err)
	}
	runs := 0
	for _, e := range events {
		if e.Cat == "Session" && e.Name == "model_run" {
			runs++
		}
	}
	if runs == 0 {
		return nil, fmt.Errorf("ONNX Runtime profile %s: no model_run events", path)
	}
	p := &Profile{Runs: runs, Providers: map[string]int{}}
	byOp := map[string]*OpTime{}
	nodes := map[string]map[string]bool{}
	byProvider := map[string]map[string]bool{}
	engines := map[string]bool{}
	for _, e := range events {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") || e.Args.Op == "" {
			continue
		}
		o := byOp[e.Args.Op]
		if o == nil {
			o = &OpTime{Op: e.Args.Op}
			byOp[e.Args.Op], nodes[e.Args.Op] = o, map[string]bool{}
		}
		o.Time += time.Duration(e.Dur) * time.Microsecond
		nodes[e.Args.Op][e.Name] = true
		if e.Args.Provider != "" {
			if byProvider[e.Args.Provider] == nil {
				byProvider[e.Args.Provider] = map[string]bool{}
			}
			byProvider[e.Args.Provider][e.Name] = true
		}
		if e.Args.Provider == TensorRTProviderName && strings.HasPrefix(e.Args.Op, "TRTKernel") {
			engines[e.Name] = true
		}
		f, ok := nodeFLOPs(e.Args.Op, shapes(e.Args.Inputs), shapes(e.Args.Output))
		p.FLOPs += f
		if !ok {
			p.Uncounted++
		}
	}
	if len(byOp) == 0 {
		return nil, fmt.Errorf("ONNX Runtime profile %s: no kernel events", path)
	}
	for prov, names := range byProvider {
		p.Providers[prov] = len(names)
	}
	p.TensorRTEngines = len(engines)
	for op, o := range byOp {
		o.Nodes = len(nodes[op])
		o.Time /= time.Duration(runs)
		p.Kernel += o.Time
		p.Ops = append(p.Ops, *o)
	}
	slices.SortFunc(p.Ops, func(a, b OpTime) int {
		if a.Time != b.Time {
			return int(b.Time - a.Time)
		}
		return strings.Compare(a.Op, b.Op)
	})
	p.FLOPs /= float64(runs)
	p.Uncounted /= runs
	return p, nil
}

// shapes drops the element types: [{"float": [1,3,640,640]}, ...] -> [[1,3,640,640], ...].
func shapes(ts []map[string][]int64) [][]int64 {
	out := make([][]int64, len(ts))
	for i, t := range ts {
		for _, dims := range t {
			out[i] = dims
		}
	}
	return out
}

func numel(dims []int64) float64 {
	n := 1.0
	for _, d := range dims {
		n *= float64(d)
	}
	return n
}

// nodeFLOPs counts 2 x multiply-accumulates of the matrix ops from their shapes, whatever the
// layout (ONNX Runtime runs INT8 convolutions in NHWC): a convolution does, per output
// element, one MAC per weight of its output channel (numel(W)/M); a matrix product does K per
// output element. Inputs follow each op's ONNX signature (QLinear* carry scales and zero points).
// ok is false for a matrix op whose shapes do not tell (a prepacked convolution weight).
func nodeFLOPs(op string, in, out [][]int64) (flops float64, ok bool) {
	if len(out) == 0 {
		return 0, true
	}
	o := numel(out[0])
	w := -1 // input index of the conv weight
	switch op {
	case "Conv", "FusedConv", "NhwcFusedConv", "NhwcConv", "ConvInteger":
		w = 1
	case "QLinearConv":
		w = 3
	case "MatMul", "FusedMatMul", "MatMulInteger", "Gemm", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul":
	default:
		return 0, true
	}
	if w >= 0 {
		// A weight is 4-D [M, C/group, kH, kW] (or 3-D/5-D); a prepacked one is missing, and
		// what stands at its index is then a 1-D scale or bias.
		if len(in) <= w || len(in[w]) < 3 || in[w][0] == 0 {
			return 0, false
		}
		return 2 * o * numel(in[w]) / float64(in[w][0]), true
	}
	// A [..., M, K] x B [..., K, N] -> [..., M, N]: K = numel(A) / (numel(out) / N), which
	// holds whether or not A is transposed (FusedMatMul, Gemm transA) and with broadcast batches
	// only on B's side; N is the output's last dimension.
	if len(in) == 0 || len(out[0]) == 0 {
		return 0, false
	}
	n := float64(out[0][len(out[0])-1])
	if n == 0 || o == 0 {
		return 0, true
	}
	return 2 * o * numel(in[0]) / (o / n), true
}
