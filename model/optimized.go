package model

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	ort "github.com/yalue/onnxruntime_go"
	"golang.org/x/sys/cpu"

	"github.com/stardetr/stardetr/internal/atomicfile"
	"github.com/stardetr/stardetr/internal/mapfile"
)

// The optimised-model cache (model.memory.map_weights). Built from an ONNX file, a session
// holds the weights on the C heap, and while it builds them the file's parsed tensors too.
// ONNX Runtime can instead save the graph it optimised in its own format (a flatbuffer) and
// build a later session from that file's bytes, using the weights where they lie
// (session.use_ort_model_bytes_directly, session.use_ort_model_bytes_for_initializers). The
// daemon maps the file read-only, so the weights are clean file-backed pages the kernel can
// drop and re-read, not heap; measured in the README, "Memory". Only the CPU provider uses it:
// the saved graph holds the CPU provider's layout choices.

// optimizedDir is the cache's folder under the state folder.
const optimizedDir = "optimized"

// optimizedName names the cache file of a model: its hash, the ONNX Runtime version, the
// optimisation level and the CPU's vector width (the CPU provider's NCHWc layout block is 16
// floats with AVX-512, 8 with AVX2), so that a file is only ever read back by the same setup.
func optimizedName(info Info, sum, graphOpt string) string {
	isa := runtime.GOARCH
	switch {
	case cpu.X86.HasAVX512F:
		isa += "-avx512"
	case cpu.X86.HasAVX2:
		isa += "-avx2"
	}
	if graphOpt == "" {
		graphOpt = "all"
	}
	return fmt.Sprintf("%s-%s-ort%s-%s-%s.ort", info.Model, sum[:16], info.ORTVersion, graphOpt, isa)
}

// cpuSessionMapped creates the CPU session from the cache, writing the cache first when it
// has no file for this model. When the cache cannot serve (a folder it cannot write, a session
// that fails while saving) it returns no session and why in skipped: the caller then builds
// the session from the ONNX file as usual. A file that fails to load is removed and written
// again.
func (d *Detector) cpuSessionMapped(cfg *Config, stateDir, plugin string) (s *ort.DynamicAdvancedSession, skipped, err error) {
	dir := filepath.Join(stateDir, optimizedDir)
	path := filepath.Join(dir, optimizedName(d.info, d.sum, cfg.GraphOpt))
	if s, err := d.sessionFromOptimized(cfg, stateDir, plugin, path); err == nil {
		return s, nil, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("the optimised copy of the model cannot be used; writing it again", "path", path, "err", err)
		_ = os.Remove(path)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err, nil
	}
	// Copies of other models (or of this one for another ONNX Runtime) are never read again.
	old, _ := filepath.Glob(filepath.Join(dir, "*.ort"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	defer os.Remove(tmp)
	opts, _, err := d.sessionOptions(cfg, stateDir, plugin, []string{ProviderCPU})
	if err != nil {
		return nil, nil, err
	}
	defer opts.Destroy()
	if err := opts.SetOptimizedModelFilePath(tmp); err != nil {
		return nil, nil, fmt.Errorf("saving the optimised model: %w", err)
	}
	if err := opts.AddSessionConfigEntry("session.save_model_format", "ORT"); err != nil {
		return nil, nil, fmt.Errorf("saving the optimised model: %w", err)
	}
	s, err = ort.NewDynamicAdvancedSession(cfg.Path, []string{InputName}, []string{OutputName}, opts)
	if err != nil {
		// A full disk fails the session too: the caller builds it once more without saving,
		// and says why only if that works (a model that fails both ways fails for itself).
		return nil, err, nil
	}
	if err := atomicfile.Sync(tmp); err != nil {
		d.log.Warn("cannot keep an optimised copy of the model: its weights stay on the heap", "err", err)
	} else if err := os.Rename(tmp, path); err != nil {
		d.log.Warn("cannot keep an optimised copy of the model: its weights stay on the heap", "err", err)
	} else {
		d.log.Info("saved an optimised copy of the model: later starts map its weights", "path", path)
	}
	// This session keeps its weights on the heap; the next start maps them.
	return s, nil, nil
}

// sessionFromOptimized maps path and builds the CPU session on its bytes in place.
func (d *Detector) sessionFromOptimized(cfg *Config, stateDir, plugin, path string) (*ort.DynamicAdvancedSession, error) {
	data, err := mapfile.ReadOnly(path)
	if err != nil {
		return nil, err
	}
	opts, _, err := d.sessionOptions(cfg, stateDir, plugin, []string{ProviderCPU})
	if err != nil {
		_ = mapfile.Unmap(data)
		return nil, err
	}
	defer opts.Destroy()
	entries := []string{"session.use_ort_model_bytes_directly", "session.use_ort_model_bytes_for_initializers"}
	if !d.info.Quantized {
		// Prepacking copies weights into the layout a kernel wants, on the heap, next to the
		// mapped ones it can no longer free. The optimised float graph already holds its
		// convolution weights in the CPU provider's blocked layout, and without prepacking the
		// seed model runs as fast (within 2%) with a 15-40 MB lower peak; int8 kernels need their packed
		// weights (18-22% slower without), so quantized models keep prepacking (README, "Memory").
		entries = append(entries, "session.disable_prepacking")
	}
	for _, k := range entries {
		if err := opts.AddSessionConfigEntry(k, "1"); err != nil {
			_ = mapfile.Unmap(data)
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{InputName}, []string{OutputName}, opts)
	if err != nil {
		_ = mapfile.Unmap(data)
		return nil, err
	}
	d.mapped = data // unmapped by Close, after the session
	d.info.Weights = path
	return s, nil
}
