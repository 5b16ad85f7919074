package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/stardetr/stardetr/model"
)

// cmdCheck validates a configuration and loads its model, listing every problem found. The
// systemd unit runs it as ExecStartPre, so a bad config fails the start with its reason in
// the journal instead of a crash loop.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", DefaultConfigPath, "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "stardetr check: %v\n", err)
		return 1
	}
	var problems []string
	if err := cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	notes, stateProblems := inspectState(cfg)
	for _, n := range notes {
		fmt.Fprintf(stdout, "state: %s\n", n)
	}
	problems = append(problems, stateProblems...)
	// The model is loaded even when other sections are wrong, so that one run lists everything.
	if err := cfg.Model.Validate(); err == nil {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		det, err := model.Open(ctx, cfg.Model, cfg.StateDir, quiet)
		if err != nil {
			problems = append(problems, "model: "+err.Error())
		} else {
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
			if err := checkLabels(cfg.Cameras, i.Names); err != nil {
				problems = append(problems, strings.Split(err.Error(), "\n")...)
			}
			if err := det.Close(); err != nil {
				problems = append(problems, "model: close: "+err.Error())
			}
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "stardetr check: %s has %d problem(s):\n", *path, len(problems))
		for _, p := range problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return 1
	}
	fmt.Fprintf(stdout, "config %s: ok (%d cameras)\n", *path, len(cfg.Cameras))
	return 0
}
