package daemon

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/stardetr/stardetr/model"
)

// cmdInfer prints the detections of one image (stardetr infer).
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
		return exitFailure
	}
	defer frame.Close()
	d, err := model.Open(ctx, *cfg, "", cliLogger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "stardetr infer:", err)
		return exitFailure
	}
	defer d.Close()
	dets, _, err := d.Detect(frame, nil)
	if err != nil {
		fmt.Fprintln(stderr, "stardetr infer:", err)
		return exitFailure
	}
	if *asJSON {
		if dets == nil {
			dets = []model.Detection{}
		}
		b, err := json.Marshal(dets)
		if err != nil {
			fmt.Fprintln(stderr, "stardetr infer:", err)
			return exitFailure
		}
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	info := d.Info()
	fmt.Fprintf(stdout, "%s: %dx%d, model %s (%s), %d detection(s) with score > %g\n",
		*image, frame.Cols(), frame.Rows(), info.Model, info.Provider, len(dets), cfg.Conf)
	for _, det := range dets {
		fmt.Fprintf(stdout, "%-16s %.4f  [%.1f, %.1f, %.1f, %.1f]\n", det.Label, det.Score, det.Box[0], det.Box[1], det.Box[2], det.Box[3])
	}
	return exitOK
}
