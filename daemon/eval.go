package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/stardetr/stardetr/internal/imgsize"
	"github.com/stardetr/stardetr/internal/yoloval"
	"github.com/stardetr/stardetr/model"
)

// evalImage is one val image with its ground truth (normalised x1,y1,x2,y2).
type evalImage struct {
	path   string
	labels []yoloval.Box
}

// cmdEval runs the model over a YOLO-format val set and prints ultralytics' val metrics:
// precision, recall, mAP50 and mAP50-95 per class and for all. As in ultralytics' RT-DETR val,
// every query scoring above --conf (0.001) counts, each image is stretched to the model's input
// with bilinear interpolation (RTDETRDataset loads val images that way), and detections and
// labels are compared in the image's own pixels (see internal/yoloval for the matching and AP).
func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	cfg := modelFlags(fs)
	data := fs.String("data", "", "dataset YAML (YOLO format: path, train, val, names)")
	cfg.Conf = 0.001 // ultralytics' val default
	fs.Float64Var(&cfg.Conf, "conf", cfg.Conf, "score threshold: detections with score > conf count")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	maxPixels := maxPixelsFlag(fs)
	if code, ok := parseCommand(fs, args, stderr, "--model M --data D.yaml [--conf 0.001] [--json]", "model", "data"); !ok {
		return code
	}
	// SIGINT and SIGTERM end ctx: every step below stops at its next file or image, and the
	// command exits 1 saying so, with no results.
	doing := "reading the dataset"
	fail := func(err error) int {
		if ctx.Err() != nil && !errors.Is(err, errInterrupted) {
			err = interrupted(ctx, doing)
		}
		fmt.Fprintln(stderr, "stardetr eval:", err)
		return exitFailure
	}
	// The dataset first, all of it: a bad label or image should not wait for a model to load
	// or for half a run. Images are checked by their header (a regular file, a known format,
	// at most --max-pixels), labels read.
	ds, err := yoloval.LoadData(*data)
	if err != nil {
		return fail(err)
	}
	paths, err := yoloval.Images(ctx, ds.Val)
	if err != nil {
		return fail(fmt.Errorf("dataset %s: val: %w", *data, err))
	}
	images, instances, err := readValImages(ctx, paths, len(ds.Names), *maxPixels)
	if err != nil {
		return fail(err)
	}
	// RT-DETR's val keeps all of its queries above conf: the cap is the decoder's query count.
	cfg.MaxDet = 10000
	doing = "loading the model"
	d, err := model.Open(ctx, *cfg, "", cliLogger(stderr))
	if err != nil {
		return fail(err)
	}
	defer d.Close()
	info := d.Info()
	if info.NumClasses != len(ds.Names) {
		return fail(fmt.Errorf("model %s has %d classes, dataset %s names %d: evaluate a model trained on this dataset",
			cfg.Path, info.NumClasses, *data, len(ds.Names)))
	}
	fmt.Fprintf(stderr, "eval: %d images, %d instances, model %s (%s)\n", len(images), instances, info.Model, info.Provider)
	doing = "evaluating"
	res, err := evaluate(ctx, d, images, *maxPixels, stderr)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	printEval(stdout, res)
	return exitOK
}

// readValImages checks every val image by its header (a regular file, a known format, at
// most maxPixels) and reads its labels; it returns them with the number of labelled instances.
func readValImages(ctx context.Context, paths []string, classes int, maxPixels int64) ([]evalImage, int, error) {
	images := make([]evalImage, len(paths))
	instances := 0
	for i, p := range paths {
		if ctx.Err() != nil {
			return nil, 0, interrupted(ctx, fmt.Sprintf("reading the dataset (image %d of %d)", i+1, len(paths)))
		}
		if _, err := imgsize.Check(p, maxPixels); err != nil {
			var tooLarge *imgsize.TooLargeError
			if errors.As(err, &tooLarge) {
				err = fmt.Errorf("%w, or raise --max-pixels", err)
			}
			return nil, 0, err
		}
		labels, err := yoloval.ReadLabels(yoloval.LabelPath(p), classes)
		if err != nil {
			return nil, 0, err
		}
		images[i] = evalImage{p, labels}
		instances += len(labels)
	}
	return images, instances, nil
}

// printEval prints the results as ultralytics' val table does.
func printEval(stdout io.Writer, res yoloval.Results) {
	fmt.Fprintf(stdout, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
	fmt.Fprintf(stdout, "%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", "all", res.Images, res.Instances, res.P, res.R, res.MAP50, res.MAP5095)
	for _, c := range res.Classes {
		fmt.Fprintf(stdout, "%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", c.Name, c.Images, c.Instances, c.P, c.R, c.MAP50, c.MAP5095)
	}
}

// evaluate runs the detector over the images and scores its detections.
func evaluate(ctx context.Context, d *model.Detector, images []evalImage, maxPixels int64, progress io.Writer) (yoloval.Results, error) {
	var (
		stats yoloval.Stats
		dets  []model.Detection
		preds []yoloval.Pred
		truth []yoloval.Truth
	)
	start, last := time.Now(), time.Now()
	for i, img := range images {
		if ctx.Err() != nil {
			return yoloval.Results{}, interrupted(ctx, fmt.Sprintf("evaluating image %d of %d", i+1, len(images)))
		}
		frame, err := readImage(img.path, maxPixels)
		if err != nil {
			return yoloval.Results{}, err
		}
		w, h := frame.Cols(), frame.Rows()
		err = d.Preprocess(frame)
		frame.Close()
		if err != nil {
			return yoloval.Results{}, fmt.Errorf("image %s: %w", img.path, err)
		}
		if err := d.Infer(); err != nil {
			return yoloval.Results{}, fmt.Errorf("image %s: %w", img.path, err)
		}
		dets = d.Decode(w, h, dets)
		preds = preds[:0]
		for _, det := range dets {
			preds = append(preds, yoloval.Pred{Class: det.ClassID, Score: det.Score, XYXY: det.Box})
		}
		truth = truth[:0]
		fw, fh := float32(w), float32(h)
		for _, l := range img.labels {
			truth = append(truth, yoloval.Truth{Class: l.Class,
				XYXY: [4]float32{l.XYXY[0] * fw, l.XYXY[1] * fh, l.XYXY[2] * fw, l.XYXY[3] * fh}})
		}
		stats.Add(preds, truth)
		if time.Since(last) > 5*time.Second || i+1 == len(images) {
			last = time.Now()
			fmt.Fprintf(progress, "eval: %d/%d images, %.2fs per image\n", i+1, len(images), time.Since(start).Seconds()/float64(i+1))
		}
	}
	return stats.Results(d.Info().Names), nil
}
