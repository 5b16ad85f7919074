package daemon

// The command line's shared parts: flag parsing with one exit-code policy (exitcodes.go), the
// model flags infer, eval and bench share, reading an image, interruption. Each subcommand
// lives in its own file (run.go, check.go, infer.go, eval.go, bench.go, version.go); main.go
// lists them.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/imgsize"
	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/model"
)

// modelFlags registers the flags that infer and bench share and returns the config they fill.
// With --config, the file's model section is the base and the other flags override it.
func modelFlags(fs *flag.FlagSet) *model.Config {
	cfg := model.DefaultConfig()
	fs.Func("config", "take the model section of this stardetr config file as the defaults", func(path string) error {
		full, err := LoadConfig(path)
		if err != nil {
			return err
		}
		cfg = full.Model
		return nil
	})
	fs.StringVar(&cfg.Path, "model", "", "ONNX model file (ultralytics RT-DETR export)")
	fs.StringVar(&cfg.ONNXRuntime, "onnxruntime", "", "ONNX Runtime library (default: $STARDETR_ONNXRUNTIME, next to the binary, the source tree's build folders, "+libsearch.SystemLibDir+")")
	fs.StringVar(&cfg.Plugin, "plugin", "", "CARAFE plugin library (default: $STARDETR_PLUGIN, next to the binary, the source tree's build folder, "+libsearch.SystemLibDir+")")
	fs.IntVar(&cfg.Threads, "threads", 0, "ONNX Runtime intra-op threads (0: ONNX Runtime decides)")
	fs.Func("providers", "execution providers in order, comma-separated (default: tensorrt,cuda where available, then cpu)", func(s string) error {
		cfg.Providers = strings.Split(s, ",")
		return nil
	})
	fs.Func("imgsz", "input size H,W or N for a model with dynamic spatial axes", func(s string) error {
		cfg.Imgsz = nil
		for _, p := range strings.Split(s, ",") {
			var v int
			if _, err := fmt.Sscan(strings.TrimSpace(p), &v); err != nil {
				return fmt.Errorf("--imgsz %q: give N or H,W", s)
			}
			cfg.Imgsz = append(cfg.Imgsz, v)
		}
		return nil
	})
	return &cfg
}

// parseFlags parses args, printing usage errors to stderr; ok is false with the exit code:
// exitOK for -h/--help, exitUsage for an unknown flag, a bad flag value or a stray argument.
// A --config flag is applied first, so that the flags after it (and before it) override the file.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(configFirst(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		quoted := make([]string, fs.NArg())
		for i, a := range fs.Args() {
			quoted[i] = strconv.Quote(a)
		}
		noun := "argument"
		if len(quoted) > 1 {
			noun = "arguments"
		}
		fmt.Fprintf(stderr, "stardetr %s: unexpected %s %s: give every value after its flag (--name value), as the usage below lists\n",
			fs.Name(), noun, strings.Join(quoted, " "))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// parseCommand is parseFlags for a command whose usage line is "stardetr NAME usage [flags]" and
// whose flags named in required must all be given.
func parseCommand(fs *flag.FlagSet, args []string, stderr io.Writer, usage string, required ...string) (code int, ok bool) {
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: stardetr %s %s [flags]\n", fs.Name(), usage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code, false
	}
	for _, name := range required {
		if f := fs.Lookup(name); f != nil && f.Value.String() == "" {
			flags := make([]string, len(required))
			for i, r := range required {
				flags[i] = "--" + r
			}
			fmt.Fprintf(stderr, "stardetr %s: %s are required\n", fs.Name(), strings.Join(flags, " and "))
			fs.Usage()
			return exitUsage, false
		}
	}
	return exitOK, true
}

// configFirst moves a --config flag to the front of args, so that the file's values are the
// base that every other flag overrides, wherever the user wrote it.
func configFirst(args []string) []string {
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			return append([]string{a}, append(args[:i:i], args[i+1:]...)...)
		case (a == "--config" || a == "-config") && i+1 < len(args):
			return append([]string{a, args[i+1]}, append(args[:i:i], args[i+2:]...)...)
		}
	}
	return args
}

func cliLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// readImage reads an image file as a BGR Mat; the caller closes it. Its header comes first
// (internal/imgsize): a file that is not regular (a named pipe called x.jpg would block the
// read forever), of a format whose size cannot be read before decoding, or of more than
// maxPixels pixels (a few hundred KB of PNG can claim 30000×30000, 2.7 GB decoded) is refused
// before OpenCV allocates anything.
func readImage(path string, maxPixels int64) (gocv.Mat, error) {
	if _, err := imgsize.Check(path, maxPixels); err != nil {
		var tooLarge *imgsize.TooLargeError
		if errors.As(err, &tooLarge) {
			return gocv.Mat{}, fmt.Errorf("%w, or raise --max-pixels", err)
		}
		return gocv.Mat{}, err
	}
	img := gocv.IMRead(path, gocv.IMReadColor)
	if img.Empty() {
		img.Close()
		return gocv.Mat{}, fmt.Errorf("image %s: OpenCV cannot decode it: give a JPEG, PNG, BMP or PPM file", path)
	}
	return img, nil
}

// maxPixelsFlag registers --max-pixels, the cap readImage applies.
func maxPixelsFlag(fs *flag.FlagSet) *int64 {
	n := int64(imgsize.DefaultMaxPixels)
	fs.Func("max-pixels", fmt.Sprintf("refuse images of more pixels than this, read from their header before decoding (default %d: 64 MP, 8192×8192)", n), func(s string) error {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1 {
			return fmt.Errorf("%q is not a positive number of pixels", s)
		}
		n = v
		return nil
	})
	return &n
}

// errInterrupted marks the error of a command stopped by SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

// interrupted is that error: why ctx ended (the signal) and what the command was doing.
func interrupted(ctx context.Context, doing string) error {
	return fmt.Errorf("%w (%v) while %s: no results", errInterrupted, context.Cause(ctx), doing)
}
