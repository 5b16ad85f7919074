package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

var graphOptLevel = map[string]ort.GraphOptimizationLevel{
	"disabled": ort.GraphOptimizationLevelDisableAll,
	"basic":    ort.GraphOptimizationLevelEnableBasic,
	"extended": ort.GraphOptimizationLevelEnableExtended,
	"all":      ort.GraphOptimizationLevelEnableAll,
	"":         ort.GraphOptimizationLevelEnableAll,
}

// DefaultProviders is the chain used when model.providers is empty: TensorRT and CUDA where
// the ONNX Runtime library ships their provider libraries next to itself, then the CPU.
func DefaultProviders(ortLib string) []string {
	var chain []string
	dir := filepath.Dir(ortLib)
	for _, p := range []struct{ name, lib string }{
		{ProviderTensorRT, "libonnxruntime_providers_tensorrt.so"},
		{ProviderCUDA, "libonnxruntime_providers_cuda.so"},
	} {
		if st, err := os.Stat(filepath.Join(dir, p.lib)); err == nil && !st.IsDir() {
			chain = append(chain, p.name)
		}
	}
	return append(chain, ProviderCPU)
}

// createSession builds the session with the first provider of the chain that can be created.
// A provider that fails is logged once with the reason and the next one is tried; the CPU
// provider needs no appending and ends every chain that lists it. ONNX Runtime reads the model
// from its path: handing it a byte slice would keep a second copy of the file (Go's) alive while
// it builds the session, and on Go's heap until a later collection (README, "Memory").
func (d *Detector) createSession(cfg *Config, stateDir, plugin string) error {
	chain := cfg.Providers
	if len(chain) == 0 {
		chain = DefaultProviders(d.rt.Library())
	}
	for len(chain) > 0 {
		opts, used, err := d.sessionOptions(cfg, stateDir, plugin, chain)
		if err != nil {
			return err
		}
		if used == "" {
			opts.Destroy()
			break
		}
		var skipped error // why the optimised copy could not serve (model.memory.map_weights)
		if used == ProviderCPU && cfg.Memory.MapWeights && stateDir != "" {
			var s *ort.DynamicAdvancedSession
			var err error
			s, skipped, err = d.cpuSessionMapped(cfg, stateDir, plugin)
			if err != nil || s != nil {
				opts.Destroy()
				if err != nil {
					return sessionError(cfg.Path, plugin, err)
				}
				d.session = s
				d.info.Provider = used
				return nil
			}
		}
		s, err := ort.NewDynamicAdvancedSession(cfg.Path, []string{InputName}, []string{OutputName}, opts)
		opts.Destroy()
		if err == nil && skipped != nil {
			d.log.Warn("cannot keep an optimised copy of the model (model.memory.map_weights): its weights stay on the heap", "err", skipped)
		}
		if err == nil {
			d.session = s
			d.info.Provider = used
			return nil
		}
		if used == ProviderCPU {
			return sessionError(cfg.Path, plugin, err)
		}
		d.skip(used, fmt.Errorf("creating the session: %w", err))
		chain = chain[slices.Index(chain, used)+1:]
	}
	return fmt.Errorf("model.providers: none of %v could be used (%s): add cpu to the chain or fix the providers above",
		cfg.Providers, strings.Join(d.info.Skipped, "; "))
}

func (d *Detector) skip(provider string, err error) {
	reason := err.Error()
	// ONNX Runtime prefixes its messages with the source location: keep what follows.
	if i := strings.LastIndex(reason, "FAIL : "); i >= 0 {
		reason = reason[i+len("FAIL : "):]
	}
	if strings.Contains(reason, "libonnxruntime_providers_") && strings.Contains(reason, "cannot open shared object") {
		reason = "this ONNX Runtime build does not ship the " + provider + " provider (" + reason + "): use a GPU build of ONNX Runtime >= " + minORTVersion
	}
	err = errors.New(reason)
	msg := provider + ": " + reason
	if slices.Contains(d.info.Skipped, msg) {
		return
	}
	d.info.Skipped = append(d.info.Skipped, msg)
	d.log.Warn("execution provider unavailable, trying the next one", "provider", provider, "reason", err.Error())
}

// sessionOptions returns options with threads, optimisation level, plugin and the providers
// of chain that could be appended; used is the first of them ("" when none could).
func (d *Detector) sessionOptions(cfg *Config, stateDir, plugin string, chain []string) (opts *ort.SessionOptions, used string, err error) {
	opts, err = ort.NewSessionOptions()
	if err != nil {
		return nil, "", fmt.Errorf("creating ONNX Runtime session options: %w", err)
	}
	defer func() {
		if err != nil {
			opts.Destroy()
			opts = nil
		}
	}()
	if cfg.Threads > 0 {
		if err := opts.SetIntraOpNumThreads(cfg.Threads); err != nil {
			return nil, "", fmt.Errorf("model.threads: %w", err)
		}
	}
	if cfg.InterThreads > 0 {
		if err := opts.SetInterOpNumThreads(cfg.InterThreads); err != nil {
			return nil, "", fmt.Errorf("model.inter_threads: %w", err)
		}
		if cfg.InterThreads > 1 {
			if err := opts.SetExecutionMode(ort.ExecutionModeParallel); err != nil {
				return nil, "", fmt.Errorf("model.inter_threads: %w", err)
			}
		}
	}
	if cfg.ProfilePrefix != "" {
		if err := opts.EnableProfiling(cfg.ProfilePrefix); err != nil {
			return nil, "", fmt.Errorf("enabling ONNX Runtime's profiler: %w", err)
		}
	}
	if err := opts.SetGraphOptimizationLevel(graphOptLevel[cfg.GraphOpt]); err != nil {
		return nil, "", fmt.Errorf("model.graph_opt: %w", err)
	}
	if err := setMemoryOptions(opts, cfg.Memory); err != nil {
		return nil, "", err
	}
	if plugin != "" {
		if err := opts.RegisterCustomOpsLibrary(plugin); err != nil {
			return nil, "", fmt.Errorf("registering the CARAFE plugin %s: %w: rebuild it for this ONNX Runtime (`make plugin`) or set model.plugin", plugin, err)
		}
	}
	for _, p := range chain {
		var err error
		switch p {
		case ProviderCPU:
			if used == "" {
				used = p
			}
			return opts, used, nil // CPU is ONNX Runtime's own fallback: nothing after it matters
		case ProviderCUDA:
			err = appendCUDA(opts)
		case ProviderTensorRT:
			err = appendTensorRT(opts, cfg, stateDir, plugin != "", d.trtPlugin, d.rt.Library())
		default:
			err = fmt.Errorf("unknown provider")
		}
		if err != nil {
			d.skip(p, err)
			continue
		}
		if used == "" {
			used = p
		}
	}
	return opts, used, nil
}

// setMemoryOptions applies model.memory (see MemoryConfig).
func setMemoryOptions(opts *ort.SessionOptions, m MemoryConfig) error {
	if err := opts.SetCpuMemArena(m.CPUArena); err != nil {
		return fmt.Errorf("model.memory.cpu_arena: %w", err)
	}
	if err := opts.SetMemPattern(m.MemPattern); err != nil {
		return fmt.Errorf("model.memory.mem_pattern: %w", err)
	}
	return nil
}

func appendCUDA(opts *ort.SessionOptions) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": "0"}); err != nil {
		return err
	}
	return opts.AppendExecutionProviderCUDA(co)
}

// appendTensorRT configures fp16 and the engine and timing caches (so that a restart loads the
// engine instead of rebuilding it). A model with CARAFE nodes gets the TensorRT plugin
// (trtPlugin, checked first: CheckTensorRTPlugin), so that TensorRT's ONNX parser takes those
// nodes too and builds one engine; without one, the CARAFE nodes are left to the provider after
// it (CUDA, the plugin library's CUDA op) and TensorRT builds engines around them.
func appendTensorRT(opts *ort.SessionOptions, cfg *Config, stateDir string, carafe bool, trtPlugin, ortLib string) error {
	to, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return err
	}
	defer to.Destroy()
	o := map[string]string{"device_id": "0"}
	if cfg.TensorRT.FP16 {
		o["trt_fp16_enable"] = "1"
	}
	dir := cfg.TensorRT.CacheDir
	if dir == "" && stateDir != "" {
		dir = filepath.Join(stateDir, "tensorrt")
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("model.tensorrt.cache_dir: %w", err)
		}
		o["trt_engine_cache_enable"] = "1"
		o["trt_engine_cache_path"] = dir
		o["trt_timing_cache_enable"] = "1"
		o["trt_timing_cache_path"] = dir
	}
	switch {
	case carafe && trtPlugin != "":
		if err := CheckTensorRTPlugin(trtPlugin, ortLib); err != nil {
			return err
		}
		o["trt_extra_plugin_lib_paths"] = trtPlugin
	case carafe:
		o["trt_op_types_to_exclude"] = "MMCVCARAFE"
	}
	if err := to.Update(o); err != nil {
		return err
	}
	return opts.AppendExecutionProviderTensorRT(to)
}

// sessionError explains a session that the CPU provider could not create.
func sessionError(path, plugin string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "MMCVCARAFE") || strings.Contains(msg, "mmcv") {
		if plugin == "" {
			return fmt.Errorf("model %s uses mmcv::MMCVCARAFE but no CARAFE plugin is registered: %w", path, err)
		}
		return fmt.Errorf("model %s: the CARAFE plugin %s does not provide the model's mmcv::MMCVCARAFE node: %w", path, plugin, err)
	}
	return fmt.Errorf("model %s: ONNX Runtime cannot create a session: %w", path, err)
}
