package model

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
)

// Config is the `model:` section of stardetr's configuration. The mapstructure tags are the
// YAML keys.
type Config struct {
	// Path is the ONNX model file (an ultralytics RT-DETR export).
	Path string `mapstructure:"path"`
	// Plugin is the CARAFE custom-op library; empty: searched (internal/libsearch).
	Plugin string `mapstructure:"plugin"`
	// ONNXRuntime is the ONNX Runtime shared library; empty: searched (internal/libsearch).
	ONNXRuntime string `mapstructure:"onnxruntime"`
	// Providers is the execution-provider chain, tried in order; empty: tensorrt and cuda
	// where the ONNX Runtime library ships them, then cpu.
	Providers []string `mapstructure:"providers"`
	// Threads is ONNX Runtime's intra-op thread count; 0 lets ONNX Runtime decide.
	Threads int `mapstructure:"threads"`
	// InterThreads is the inter-op thread count; 0 lets ONNX Runtime decide.
	InterThreads int `mapstructure:"inter_threads"`
	// GraphOpt is the graph optimisation level: disabled, basic, extended or all.
	GraphOpt string `mapstructure:"graph_opt"`
	// Imgsz is the input size [height, width] (one value: square) for a model whose spatial
	// axes are dynamic; empty: the model's metadata, else its fixed shape.
	Imgsz []int `mapstructure:"imgsz"`
	// Conf is the score threshold: a detection is kept when its score is > Conf.
	Conf float64 `mapstructure:"conf"`
	// MaxDet caps the detections per frame.
	MaxDet int `mapstructure:"max_det"`
	// Classes keeps only these class ids; empty keeps all.
	Classes []int `mapstructure:"classes"`
	// Names overrides the model's class names (id -> label).
	Names map[int]string `mapstructure:"names"`
	// Batch is the most frames, one per camera, that one Run takes (Batch): above 1 the model
	// needs a dynamic batch axis. 1 runs each frame alone.
	Batch int `mapstructure:"batch"`
	// BatchWait is how long a batch that has a frame waits for other cameras' frames before it
	// runs with what it has: the most a batch adds to a frame's latency.
	BatchWait time.Duration `mapstructure:"batch_wait"`
	// TensorRT holds the TensorRT execution provider's options.
	TensorRT TensorRTConfig `mapstructure:"tensorrt"`
	// ProfilePrefix, when set, makes ONNX Runtime profile every run and write
	// <ProfilePrefix>_<time>.json when the Detector closes (ReadProfile). Not a configuration
	// key: `stardetr bench` sets it for a session of its own, since profiling slows each run.
	ProfilePrefix string `mapstructure:"-"`
	// Memory holds ONNX Runtime's memory options.
	Memory MemoryConfig `mapstructure:"memory"`
}

// MemoryConfig holds ONNX Runtime's memory options. The defaults are the combination that
// measured lowest in peak resident memory at no cost in speed (README, "Memory").
type MemoryConfig struct {
	// CPUArena lets ONNX Runtime keep freed CPU buffers in its own arena for reuse instead of
	// returning them to the C allocator; the arena only grows.
	CPUArena bool `mapstructure:"cpu_arena"`
	// MemPattern lets ONNX Runtime plan each run's intermediate buffers from the previous run's.
	MemPattern bool `mapstructure:"mem_pattern"`
	// MapWeights keeps, on the CPU provider, an optimised copy of the model in ONNX Runtime's
	// own format under <state_dir>/optimized/ (written on the first start with a new model) and
	// runs later starts from a read-only mapping of it, the weights used in place: file-backed
	// pages instead of a heap copy (README, "Memory").
	MapWeights bool `mapstructure:"map_weights"`
}

// TensorRTConfig holds the TensorRT execution provider's options.
type TensorRTConfig struct {
	// FP16 lets TensorRT build float16 kernels.
	FP16 bool `mapstructure:"fp16"`
	// CacheDir holds the engine and timing caches so that a restart does not rebuild the
	// engine; empty: <state_dir>/tensorrt.
	CacheDir string `mapstructure:"cache_dir"`
	// Plugin is the TensorRT plugin library MMCVCARAFE (libstardetr_carafe_trt.so), handed to the
	// TensorRT provider as trt_extra_plugin_lib_paths for a model with CARAFE nodes, so that
	// TensorRT takes the whole model, CARAFE included, as one engine. Empty: searched
	// (internal/libsearch: $STARDETR_TRT_PLUGIN, next to the binary, the source tree's build
	// folder, /usr/lib/stardetr, where the Jetson package installs it); when none is found
	// TensorRT builds engines around the CARAFE nodes, which run on CUDA.
	Plugin string `mapstructure:"plugin"`
}

// Provider names accepted in Config.Providers.
const (
	ProviderTensorRT = "tensorrt"
	ProviderCUDA     = "cuda"
	ProviderCPU      = "cpu"
)

var knownProviders = []string{ProviderTensorRT, ProviderCUDA, ProviderCPU}

var graphOptLevels = []string{"disabled", "basic", "extended", "all"}

// DefaultConfig returns the defaults of the `model:` section.
func DefaultConfig() Config {
	return Config{
		GraphOpt:  "all",
		Batch:     1,
		BatchWait: 5 * time.Millisecond,
		Conf:      0.25,
		MaxDet:    100,
		TensorRT:  TensorRTConfig{FP16: true},
		Memory:    MemoryConfig{CPUArena: false, MemPattern: true, MapWeights: true},
	}
}

// Validate reports every invalid value, each naming its key within the section (confcheck).
func (c *Config) Validate() error {
	var l confcheck.List
	if strings.TrimSpace(c.Path) == "" {
		l.Add("path", "required: the ONNX model file to run")
	}
	seen := map[string]bool{}
	for i, p := range c.Providers {
		if !slices.Contains(knownProviders, p) {
			l.Add(fmt.Sprintf("providers[%d]", i), "%q is not a provider: use %s", p, strings.Join(knownProviders, ", "))
		} else if seen[p] {
			l.Add(fmt.Sprintf("providers[%d]", i), "%q is listed twice", p)
		}
		seen[p] = true
	}
	if c.Threads < 0 || c.Threads > 1024 {
		l.Add("threads", "%d is out of range: 0 (ONNX Runtime decides) to 1024", c.Threads)
	}
	if c.InterThreads < 0 || c.InterThreads > 1024 {
		l.Add("inter_threads", "%d is out of range: 0 (ONNX Runtime decides) to 1024", c.InterThreads)
	}
	if c.GraphOpt != "" && !slices.Contains(graphOptLevels, c.GraphOpt) {
		l.Add("graph_opt", "%q is not a level: use %s", c.GraphOpt, strings.Join(graphOptLevels, ", "))
	}
	switch len(c.Imgsz) {
	case 0:
	case 1, 2:
		for i, v := range c.Imgsz {
			if v < 32 || v > 8192 {
				l.Add(fmt.Sprintf("imgsz[%d]", i), "%d is out of range: 32 to 8192 pixels", v)
			}
		}
	default:
		l.Add("imgsz", "%v has %d values: give [size] or [height, width]", c.Imgsz, len(c.Imgsz))
	}
	if math.IsNaN(c.Conf) || c.Conf < 0 || c.Conf >= 1 {
		l.Add("conf", "%v is out of range: 0 <= conf < 1", c.Conf)
	}
	if c.MaxDet < 1 || c.MaxDet > 10000 {
		l.Add("max_det", "%d is out of range: 1 to 10000", c.MaxDet)
	}
	if c.Batch < 1 || c.Batch > 64 {
		l.Add("batch", "%d is out of range: 1 (each frame alone) to 64 frames", c.Batch)
	}
	if c.BatchWait < 0 || c.BatchWait > time.Second {
		l.Add("batch_wait", "%v is out of range: 0 to 1s", c.BatchWait)
	}
	for i, id := range c.Classes {
		if id < 0 {
			l.Add(fmt.Sprintf("classes[%d]", i), "%d is negative: class ids start at 0", id)
		}
	}
	for id := range c.Names {
		if id < 0 {
			l.Add("names", "key %d is negative: class ids start at 0", id)
		}
	}
	return l.Err()
}

// imgsz returns the configured [height, width], or zeros.
func (c *Config) imgsz() (h, w int) {
	switch len(c.Imgsz) {
	case 1:
		return c.Imgsz[0], c.Imgsz[0]
	case 2:
		return c.Imgsz[0], c.Imgsz[1]
	}
	return 0, 0
}
