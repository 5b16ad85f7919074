package daemon

import (
	"context"
	"encoding/json"
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

// parseFlags parses args, printing usage errors to stderr; ok is false with the exit code.
// A --config flag is applied first, so that the flags after it (and before it) override the file.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(configFirst(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stardetr %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
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
			return 2, false
		}
	}
	return 0, true
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

func cmdInfer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("infer", flag.ContinueOnError)
	cfg := modelFlags(fs)
	image := fs.String("image", "", "image file to detect objects in")
	fs.Float64Var(&cfg.Conf, "conf", cfg.Conf, "score threshold: keep detections with score > conf")
	fs.IntVar(&cfg.MaxDet, "max-det", cfg.MaxDet, "most detections to print")
	asJSON := fs.Bool("json", false, "print a JSON list of {class_id, label, score, box: [x1, y1, x2, y2]}")
	maxPixels := maxPixelsFlag(fs)
	if code, ok := parseCommand(fs, args, stderr, "--model M --image I [--conf 0.25] [--json]", "model", "image"); !ok {
		return code
	}
	// The image first: a bad path should not wait for a model to load.
	frame, err := readImage(*image, *maxPixels)
	if err != nil {
		fmt.Fprintln(stderr, "stardetr infer:", err)
		return 1
	}
	defer frame.Close()
	d, err := model.Open(ctx, *cfg, "", cliLogger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "stardetr infer:", err)
		return 1
	}
	defer d.Close()
	dets, _, err := d.Detect(frame, nil)
	if err != nil {
		fmt.Fprintln(stderr, "stardetr infer:", err)
		return 1
	}
	if *asJSON {
		if dets == nil {
			dets = []model.Detection{}
		}
		b, err := json.Marshal(dets)
		if err != nil {
			fmt.Fprintln(stderr, "stardetr infer:", err)
			return 1
		}
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	info := d.Info()
	fmt.Fprintf(stdout, "%s: %dx%d, model %s (%s), %d detection(s) with score > %g\n",
		*image, frame.Cols(), frame.Rows(), info.Model, info.Provider, len(dets), cfg.Conf)
	for _, det := range dets {
		fmt.Fprintf(stdout, "%-16s %.4f  [%.1f, %.1f, %.1f, %.1f]\n", det.Label, det.Score, det.Box[0], det.Box[1], det.Box[2], det.Box[3])
	}
	return 0
}
