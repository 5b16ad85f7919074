// Package model turns a frame into detections: it owns the ONNX Runtime session of an
// ultralytics RT-DETR export (execution-provider chain, CARAFE plugin, metadata), the
// preprocessing of a BGR frame into the model's input tensor and the decoding of its output,
// following ultralytics' RT-DETR predictor exactly (the contract in the README, "Your own model").
package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/internal/mapfile"
)

// Detection is one detected object, its box in frame pixels (the type every stage carries).
type Detection = detection.Detection

// Timings are the durations of one Detect.
type Timings struct {
	Preprocess, Run, Decode time.Duration
}

// Info describes an open Detector.
type Info struct {
	Model       string   // file name without .onnx
	Path        string   // model file
	SHA256      string   // first 12 hex digits of the file's sha256
	Height      int      // input height
	Width       int      // input width
	Queries     int      // decoder queries (output0's second axis)
	NumClasses  int      // nc
	Names       []string // label of each class id
	Stride      int      // 0 when the metadata has none
	Provider    string   // execution provider in use: tensorrt, cuda or cpu
	Skipped     []string // providers of the chain that could not be used, "name: reason"
	HasCARAFE   bool     // the model has mmcv nodes and the plugin is registered
	CARAFENodes int
	Plugin      string // plugin path, "" when not needed
	ONNXRuntime string // library path
	ORTVersion  string
	Threads     int
	MaxBatch    int           // frames one Run can take: 1, or 0 for a dynamic batch axis (no limit)
	LoadTime    time.Duration // Open, from reading the file to the warm-up run's end
	// Quantized: the model has int8 (QDQ or QLinear/Integer) nodes.
	Quantized bool
	// Weights is the optimised copy of the model whose mapped weights the session uses
	// (model.memory.map_weights); empty when they are on the heap.
	Weights string
	// TensorRTPlugin is the TensorRT plugin library handed to the TensorRT provider
	// (model.tensorrt.plugin); "" when none (no CARAFE node, no TensorRT, or none found).
	TensorRTPlugin string
}

// Detector runs one model. Its own Preprocess, Infer, Decode and Detect share one Input and
// must not be called concurrently; a pipeline that overlaps stages uses one Input per stage
// slot (NewInput), which may run concurrently with each other.
type Detector struct {
	rt      *Runtime
	log     *slog.Logger
	session *ort.DynamicAdvancedSession
	info    Info
	conf    float32
	maxDet  int
	keep    []bool // class filter by id; nil keeps all
	lut     [256]float32

	mu      sync.Mutex
	inputs  []*Input
	batches []*Batch
	def     *Input
	closed  bool

	sum    string // the model file's SHA-256, hex
	mapped []byte // the optimised model's mapping, whose bytes the session uses (optimized.go)

	trtPlugin string // TensorRT plugin for the TensorRT provider ("" none)
}

// Open loads ONNX Runtime (once per process), the CARAFE plugin when the model has mmcv
// nodes, creates the session with the first provider of the chain that works, checks that the
// model is an RT-DETR detector and runs it once. On error nothing stays open.
func Open(ctx context.Context, cfg Config, stateDir string, log *slog.Logger) (*Detector, error) {
	return OpenWith(ctx, cfg, stateDir, log, libsearch.DefaultLocator())
}

// OpenWith is Open with the places to search for the libraries given.
func OpenWith(ctx context.Context, cfg Config, stateDir string, log *slog.Logger, loc libsearch.Locator) (_ *Detector, err error) {
	start := time.Now()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := confcheck.In("model", cfg.Validate()); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spec, sum, err := loadSpec(&cfg)
	if err != nil {
		return nil, err
	}
	libs, err := findLibraries(&cfg, spec, loc, log)
	if err != nil {
		return nil, err
	}
	rt, err := LoadRuntime(libs.onnxRuntime)
	if err != nil {
		return nil, err
	}
	if err := rt.acquire(); err != nil {
		return nil, err
	}
	d := newDetector(rt, &cfg, spec, sum, libs, log)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := d.start(&cfg, spec, stateDir, libs.plugin); err != nil {
		return nil, err
	}
	d.info.LoadTime = time.Since(start)
	log.Info("model loaded", "model", d.info.Model, "sha256", d.info.SHA256, "input", fmt.Sprintf("%dx%d", d.info.Width, d.info.Height),
		"classes", d.info.NumClasses, "provider", d.info.Provider, "carafe", d.info.HasCARAFE, "int8", d.info.Quantized, "onnxruntime", d.info.ORTVersion,
		"load_time", d.info.LoadTime.Round(time.Millisecond), "weights_mapped_from", d.info.Weights)
	return d, nil
}

// loadSpec reads and hashes the model file and inspects it.
func loadSpec(cfg *Config) (*modelSpec, [sha256.Size]byte, error) {
	m, sum, size, err := readModel(cfg.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, sum, fmt.Errorf("model.path: %s does not exist: set model.path to your ultralytics RT-DETR ONNX export (see the README, \"Your own model\")", cfg.Path)
		}
		var perr *parseError
		if errors.As(err, &perr) {
			return nil, sum, fmt.Errorf("model %s (%d bytes) is not a readable ONNX model (%v): the file is truncated or of another kind; copy or export it again", cfg.Path, size, perr.err)
		}
		return nil, sum, fmt.Errorf("model.path: reading %s: %w", cfg.Path, err)
	}
	spec, err := inspectModel(m, cfg)
	if err != nil {
		return nil, sum, fmt.Errorf("model %s: %w", cfg.Path, err)
	}
	return spec, sum, nil
}

// libraries are the shared libraries a model needs ("" where it needs none).
type libraries struct {
	onnxRuntime string
	plugin      string // CARAFE plugin for ONNX Runtime
	trtPlugin   string // CARAFE plugin for the TensorRT provider
}

// findLibraries locates ONNX Runtime and, for a model with mmcv nodes, the CARAFE plugins.
func findLibraries(cfg *Config, spec *modelSpec, loc libsearch.Locator, log *slog.Logger) (libraries, error) {
	var libs libraries
	var err error
	if libs.onnxRuntime, err = loc.ONNXRuntime(cfg.ONNXRuntime); err != nil {
		return libs, err
	}
	if !spec.hasMMCV {
		return libs, nil
	}
	if libs.plugin, err = loc.Plugin(cfg.Plugin); err != nil {
		return libs, fmt.Errorf("model %s has %d mmcv::MMCVCARAFE node(s), which need the CARAFE plugin: %w", cfg.Path, spec.carafeNodes, err)
	}
	chain := cfg.Providers
	if len(chain) == 0 {
		chain = DefaultProviders(libs.onnxRuntime)
	}
	if slices.Contains(chain, ProviderTensorRT) {
		if libs.trtPlugin, err = loc.TRTPlugin(cfg.TensorRT.Plugin); err != nil {
			return libs, fmt.Errorf("model.tensorrt.plugin: %w", err)
		}
		if libs.trtPlugin == "" {
			log.Info("no TensorRT CARAFE plugin found (model.tensorrt.plugin): TensorRT builds engines around the CARAFE nodes, which run on CUDA")
		}
	}
	return libs, nil
}

// newDetector is the Detector of spec before its session exists.
func newDetector(rt *Runtime, cfg *Config, spec *modelSpec, sum [sha256.Size]byte, libs libraries, log *slog.Logger) *Detector {
	sumHex := hex.EncodeToString(sum[:])
	d := &Detector{
		rt:        rt,
		log:       log,
		conf:      float32(cfg.Conf),
		maxDet:    cfg.MaxDet,
		sum:       sumHex,
		trtPlugin: libs.trtPlugin,
		info: Info{
			Model:          strings.TrimSuffix(filepath.Base(cfg.Path), ".onnx"),
			Path:           cfg.Path,
			SHA256:         sumHex[:12],
			Height:         spec.height,
			Width:          spec.width,
			Stride:         spec.stride,
			HasCARAFE:      spec.hasMMCV,
			CARAFENodes:    spec.carafeNodes,
			Quantized:      spec.quantized,
			Plugin:         libs.plugin,
			ONNXRuntime:    rt.Library(),
			ORTVersion:     rt.Version(),
			Threads:        cfg.Threads,
			TensorRTPlugin: libs.trtPlugin,
		},
	}
	for i := range d.lut {
		d.lut[i] = float32(i) / 255 // ultralytics divides the float32 image by 255
	}
	return d
}

// start creates the session, completes the spec (output shape, class names and filter) and
// runs the model once.
func (d *Detector) start(cfg *Config, spec *modelSpec, stateDir, plugin string) (err error) {
	if err := d.createSession(cfg, stateDir, plugin); err != nil {
		return err
	}
	if err := d.resolveOutput(spec); err != nil {
		return fmt.Errorf("model %s: %w", cfg.Path, err)
	}
	if d.info.Names, d.keep, err = spec.classes(cfg); err != nil {
		return err
	}
	if d.def, err = d.NewInput(); err != nil {
		return err
	}
	// The warm-up run proves the session runs (plugin included) before anything is reported
	// ready, and takes the first-run cost out of the first frame.
	if err := d.def.Run(); err != nil {
		return fmt.Errorf("model %s: first run: %w", cfg.Path, err)
	}
	if !spec.dynamicBatch {
		d.info.MaxBatch = 1
	}
	return nil
}

// resolveOutput fixes the output shape [1, queries, 4+nc]: from the graph and metadata when
// they give it, else from one run (an ultralytics export of the CARAFE model leaves it symbolic).
func (d *Detector) resolveOutput(spec *modelSpec) error {
	if spec.queries < 0 || spec.nc < 0 {
		in, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, int64(spec.height), int64(spec.width)))
		if err != nil {
			return fmt.Errorf("allocating the input tensor: %w", err)
		}
		defer in.Destroy()
		outs := []ort.Value{nil}
		if err := d.session.Run([]ort.Value{in}, outs); err != nil {
			return fmt.Errorf("first run to learn the output shape: %w", err)
		}
		defer outs[0].Destroy()
		if err := spec.checkOutputShape(outs[0].GetShape(), spec.nc, true); err != nil {
			return err
		}
	}
	d.info.Queries, d.info.NumClasses = spec.queries, spec.nc
	return nil
}

// Info describes the model and how it runs.
func (d *Detector) Info() Info { return d.info }

// Preprocess fills the detector's input from a frame (see Input.Preprocess).
func (d *Detector) Preprocess(frame gocv.Mat) error { return d.def.Preprocess(frame) }

// Infer runs the model on the detector's input.
func (d *Detector) Infer() error { return d.def.Run() }

// Decode turns the last Infer's output into detections for a frame of frameW x frameH
// pixels, appended to out[:0].
func (d *Detector) Decode(frameW, frameH int, out []Detection) []Detection {
	return d.def.Decode(frameW, frameH, out)
}

// Detect preprocesses, runs and decodes one frame; out's storage is reused.
func (d *Detector) Detect(frame gocv.Mat, out []Detection) ([]Detection, Timings, error) {
	return d.def.Detect(frame, out)
}

// DefaultInput is the Input that the Detector's own Preprocess, Infer and Decode use.
func (d *Detector) DefaultInput() *Input { return d.def }

// Close releases the inputs and the session. The Runtime stays loaded (see Runtime.Close).
func (d *Detector) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	inputs, batches := d.inputs, d.batches
	d.inputs, d.batches = nil, nil
	d.mu.Unlock()
	var errs []error
	for _, in := range inputs {
		errs = append(errs, in.close())
	}
	for _, b := range batches {
		errs = append(errs, b.close())
	}
	if d.session != nil {
		errs = append(errs, d.session.Destroy())
		d.session = nil
	}
	if d.mapped != nil {
		errs = append(errs, mapfile.Unmap(d.mapped))
		d.mapped = nil
	}
	d.rt.release()
	return errors.Join(errs...)
}
