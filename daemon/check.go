package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stardetr/stardetr/model"
)

// cmdCheck validates a configuration and loads its model, listing every problem found. The
// systemd unit runs it as ExecStartPre, so a bad config fails the start with its reason in
// the journal instead of a crash loop.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", DefaultConfigPath, "configuration file (YAML)")
	if code, ok := parseCommand(fs, args, stderr, "[--config F]"); !ok {
		return code
	}
	// SIGINT and SIGTERM end ctx: check stops after the step it is in (each is bounded: zone
	// polygons are capped, the model's load is the longest) and exits 1 saying so.
	stop := func(doing string) int {
		fmt.Fprintf(stderr, "stardetr check: %v\n", interrupted(ctx, doing))
		return exitFailure
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		// A file that cannot be read or parsed is not a config with problems: nothing to check.
		fmt.Fprintf(stderr, "stardetr check: %v\n", err)
		return exitUsage
	}
	if ctx.Err() != nil {
		return stop("reading " + *path)
	}
	var problems []string
	if err := cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if ctx.Err() != nil {
		return stop("validating " + *path)
	}
	notes, stateProblems := inspectState(cfg)
	for _, n := range notes {
		fmt.Fprintf(stdout, "state: %s\n", n)
	}
	problems = append(problems, stateProblems...)
	// The model is loaded even when other sections are wrong, so that one run lists everything.
	if cfg.Model.Validate() == nil {
		modelProblems, err := checkModel(ctx, &cfg, stdout)
		if err != nil {
			return stop("loading the model")
		}
		problems = append(problems, modelProblems...)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "stardetr check: %s has %d problem(s):\n", *path, len(problems))
		for _, p := range problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "config %s: ok (%d cameras)\n", *path, len(cfg.Cameras))
	return exitOK
}

// checkModel loads the config's model as the service would, prints what it found (model,
// providers, int8 support, nodes per provider) and returns the problems: the model's load, the
// batch, the class names the config uses. err is set only when ctx ended during the load.
func checkModel(ctx context.Context, cfg *Config, stdout io.Writer) (problems []string, err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// ONNX Runtime's profile of Open's runs says which provider ran each node, and so how many
	// TensorRT engines the session built (providerReport).
	mcfg := cfg.Model
	if profDir, err := os.MkdirTemp("", "stardetr-check-"); err == nil {
		defer os.RemoveAll(profDir)
		mcfg.ProfilePrefix = filepath.Join(profDir, "ort")
	}
	det, err := model.Open(ctx, mcfg, cfg.StateDir, quiet)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return []string{"model: " + err.Error()}, nil
	}
	i := det.Info()
	fmt.Fprintf(stdout, "model: %s (sha256 %s), input %dx%d, %d classes, provider %s, CARAFE nodes %d, ONNX Runtime %s, loaded in %s\n",
		i.Path, i.SHA256, i.Width, i.Height, i.NumClasses, i.Provider, i.CARAFENodes, i.ORTVersion, i.LoadTime.Round(1e6))
	for _, s := range i.Skipped {
		fmt.Fprintf(stdout, "model: provider skipped: %s\n", s)
	}
	fmt.Fprintf(stdout, "cpu: int8 dot product: %s\n", hostInt8Dot())
	if b, err := det.NewBatch(cfg.Model.Batch); err != nil {
		problems = append(problems, "model.batch: "+err.Error())
	} else {
		b.Close()
	}
	if err := checkModelLabels(cfg, i.Names); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if err := det.Close(); err != nil {
		problems = append(problems, "model: close: "+err.Error())
	} else if mcfg.ProfilePrefix != "" {
		fmt.Fprint(stdout, providerReport(i, mcfg.ProfilePrefix))
	}
	return problems, nil
}

// providerReport reads the ONNX Runtime profile of the checked session (its warm-up runs) and
// says how many nodes ran on each execution provider and, on TensorRT, how many TensorRT
// engines the session built: ONNX Runtime's TensorRT provider runs each engine as one fused
// node of op type TRTKernel_graph_* (one for the whole model when TensorRT's ONNX parser takes
// every node, CARAFE included through model.tensorrt.plugin).
func providerReport(i model.Info, prefix string) string {
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) != 1 {
		return fmt.Sprintf("model: nodes per provider: unknown (ONNX Runtime wrote %d profiles)\n", len(files))
	}
	p, err := model.ReadProfile(files[0])
	if err != nil {
		return fmt.Sprintf("model: nodes per provider: unknown (%v)\n", err)
	}
	names := make([]string, 0, len(p.Providers))
	for n := range p.Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for k, n := range names {
		parts[k] = fmt.Sprintf("%s %d", n, p.Providers[n])
	}
	out := fmt.Sprintf("model: nodes per provider in the warm-up run: %s\n", strings.Join(parts, ", "))
	if i.Provider != model.ProviderTensorRT {
		return out
	}
	out += fmt.Sprintf("model: TensorRT engines: %d (one per subgraph TensorRT took; built, or loaded from model.tensorrt.cache_dir)", p.TensorRTEngines)
	if i.HasCARAFE && i.TensorRTPlugin == "" {
		out += " (no TensorRT CARAFE plugin: the CARAFE nodes run on CUDA between engines; see model.tensorrt.plugin)"
	}
	if i.TensorRTPlugin != "" {
		out += ", TensorRT plugin " + i.TensorRTPlugin
	}
	return out + "\n"
}
