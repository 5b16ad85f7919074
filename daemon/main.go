// Package daemon is the stardetr command: it reads the whole configuration, builds the
// camera sources, the model, the publisher and the pipeline from it, and owns their lifecycle
// (signals, systemd notify and watchdog, HTTP endpoints). It is the only package that knows
// every other one.
//
// Its rooms, by file:
//   - the command line: main.go (the subcommand table, Main), cli.go (flag parsing and the
//     helpers the subcommands share), exitcodes.go (the exit-code policy), one file per
//     subcommand: run.go, check.go (with checkstate.go), infer.go, eval.go, bench.go
//     (with cpupeak.go, int8dot.go), version.go;
//   - the configuration: config.go (the file, its loading and validation), httpconfig.go,
//     events.go's and homeassistant.go's sections, topics.go (names that become topics);
//   - the service: service.go (start, wait, stop), reload.go (SIGHUP), notify.go (systemd),
//     sink.go (what the pipeline hands on to MQTT);
//   - HTTP: http.go (the one route table, authentication, the server's limits), live.go (the
//     live view), events.go and snapshots.go (the events API and event snapshots);
//   - MQTT's retained topics: homeassistant.go (counts and Home Assistant discovery).
package daemon

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

// Version is the stardetr version, set at link time by the Makefile.
var Version = "0.0.0-dev"

// command is one subcommand of stardetr.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the detector service (--config FILE)", cmdRun},
		{"check", "validate a config file and its model, listing every problem (--config FILE)", cmdCheck},
		{"infer", "detect objects in one image (--model M --image I [--conf 0.25] [--json])", cmdInfer},
		{"eval", "accuracy on a YOLO-format val set as ultralytics val computes it (--model M --data D.yaml [--conf 0.001] [--json])", cmdEval},
		{"bench", "time a model: load, preprocess, run, decode vs a bare Run() (--model M)", cmdBench},
		{"version", "print the versions of stardetr, ONNX Runtime, OpenCV and the CARAFE plugin", cmdVersion},
	}
}

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "stardetr: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "stardetr %s: a camera object detector service (RT-DETR StarNet+FreqFusion, ONNX Runtime, MQTT)\n\nusage: stardetr <command> [flags]\n\ncommands:\n", Version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintf(w, "\nRun 'stardetr <command> -h' for the flags of a command.\n")
}
