// Package yoloval reads a YOLO-format detection dataset and scores detections on it the way
// ultralytics' validator does (ultralytics/engine/validator.py match_predictions,
// ultralytics/utils/metrics.py ap_per_class and compute_ap, as of ultralytics 8.3.112), so that
// `stardetr eval` reports the precision, recall, mAP50 and mAP50-95 ultralytics' val reports.
//
// The dataset rules are those of model/data/check.py, which checks the same datasets before
// training: each bad input is one error naming the file (and line, for labels).
package yoloval

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/stardetr/stardetr/internal/imgsize"
)

// imageSuffixes are the image file suffixes ultralytics accepts (lower case).
var imageSuffixes = []string{".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}

// Data is a dataset YAML with its folders resolved.
type Data struct {
	YAML  string
	Root  string // "path": the YAML's folder by default, relative to it when relative
	Train string
	Val   string
	Names []string // class names by id
}

// Box is one ground-truth object: class and x1, y1, x2, y2 normalised to 0..1.
type Box struct {
	Class int
	XYXY  [4]float32
}

// LoadData reads a dataset YAML (ultralytics' detect format: path, train, val, names).
func LoadData(path string) (*Data, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w; give the data.yaml of a YOLO-format dataset", path, err)
	}
	var doc struct {
		Path  string    `yaml:"path"`
		Train string    `yaml:"train"`
		Val   string    `yaml:"val"`
		Names yaml.Node `yaml:"names"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("dataset %s: not a dataset YAML: %w", path, err)
	}
	d := &Data{YAML: path, Root: doc.Path}
	if d.Root == "" {
		d.Root = "."
	}
	if !filepath.IsAbs(d.Root) {
		d.Root = filepath.Join(filepath.Dir(path), d.Root)
	}
	if d.Names, err = parseNames(doc.Names); err != nil {
		return nil, fmt.Errorf("dataset %s: names: %w", path, err)
	}
	for _, s := range []struct {
		key string
		val string
		dst *string
	}{{"train", doc.Train, &d.Train}, {"val", doc.Val, &d.Val}} {
		if s.val == "" {
			return nil, fmt.Errorf("dataset %s: %q must name a folder of images (relative to %s)", path, s.key, d.Root)
		}
		dir := s.val
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(d.Root, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("dataset %s: %s folder %s does not exist (key %q, relative to path %s)", path, s.key, dir, s.key, d.Root)
		}
		// ultralytics resolves the folder ((path / val).resolve() in check_det_dataset), so
		// that its images' paths, on whose text img2label_paths finds the labels, are absolute
		// with every symbolic link followed: `path: .` read from the dataset's own folder
		// finds the same labels as an absolute or a linked path.
		res, err := filepath.Abs(dir)
		if err == nil {
			res, err = filepath.EvalSymlinks(res)
		}
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %s folder %s: %w", path, s.key, dir, err)
		}
		*s.dst = res
	}
	return d, nil
}

// parseNames accepts a list of names or a mapping id -> name with ids 0..nc-1.
func parseNames(n yaml.Node) ([]string, error) {
	var names []string
	switch n.Kind {
	case yaml.SequenceNode:
		if err := n.Decode(&names); err != nil {
			return nil, err
		}
	case yaml.MappingNode:
		var m map[int]string
		if err := n.Decode(&m); err != nil {
			return nil, fmt.Errorf("a mapping of class ids to names: %w", err)
		}
		names = make([]string, len(m))
		for id, name := range m {
			if id < 0 || id >= len(m) {
				return nil, fmt.Errorf("class ids must be 0..%d, got %d", len(m)-1, id)
			}
			names[id] = name
		}
	default:
		return nil, errors.New("missing: list the class names (a list, or ids 0..nc-1 mapped to names)")
	}
	if len(names) == 0 {
		return nil, errors.New("no classes listed")
	}
	return names, nil
}

// Images lists the image files under dir (recursively), sorted as ultralytics sorts them.
// A file with an image suffix that is not a regular file (a named pipe, a device, a folder),
// directly or through a symbolic link, is an error naming it: reading it could block forever.
// The walk stops when ctx ends.
func Images(ctx context.Context, dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || !slices.Contains(imageSuffixes, strings.ToLower(filepath.Ext(p))) {
			return nil
		}
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			st, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			mode = st.Mode()
		}
		if !mode.IsRegular() {
			return fmt.Errorf("%s is %s, not an image file: remove it from the dataset", p, imgsize.Kind(mode))
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("listing images in %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no images (%s)", dir, strings.Join(imageSuffixes, ", "))
	}
	slices.Sort(out)
	return out, nil
}

// LabelPath is ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt.
func LabelPath(image string) string {
	const sep = string(filepath.Separator)
	p := image
	if i := strings.LastIndex(p, sep+"images"+sep); i >= 0 {
		p = p[:i] + sep + "labels" + sep + p[i+len(sep+"images"+sep):]
	}
	return strings.TrimSuffix(p, filepath.Ext(p)) + ".txt"
}

// ReadLabels reads one label file (class cx cy w h per line, normalised); a missing file is an
// image without objects. Errors name the file and line.
//
// A label file that is not a regular file (a named pipe, a device) is refused after a stat,
// never opened for a blocking read.
func ReadLabels(path string, nc int) ([]Box, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the label file: %w", path, err)
	}
	notFile := func(m fs.FileMode) error {
		return fmt.Errorf("%s: is %s, not a label file: remove it or write the labels in a text file", path, imgsize.Kind(m))
	}
	if !st.Mode().IsRegular() {
		return nil, notFile(st.Mode())
	}
	// O_NONBLOCK: a file turned into a named pipe since the stat does not block the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the label file: %w", path, err)
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("%s: cannot read the label file: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, notFile(st.Mode())
	}
	var out []Box
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		parts := strings.Fields(sc.Text())
		if len(parts) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, line)
		if len(parts) != 5 {
			return nil, fmt.Errorf("%s: expected 5 values 'class cx cy w h', got %d", where, len(parts))
		}
		cls, err := strconv.Atoi(parts[0])
		if err != nil {
			return nil, fmt.Errorf("%s: class %q is not an integer", where, parts[0])
		}
		var v [4]float32
		for i := range v {
			x, err := strconv.ParseFloat(parts[i+1], 32)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number; expected 'class cx cy w h'", where, parts[i+1])
			}
			v[i] = float32(x)
		}
		if cls < 0 || cls >= nc {
			return nil, fmt.Errorf("%s: class %d is outside 0..%d (the dataset YAML names %d classes)", where, cls, nc-1, nc)
		}
		for _, x := range v {
			if !(x >= 0 && x <= 1) {
				return nil, fmt.Errorf("%s: box %v has coordinates outside 0..1; YOLO labels are normalised by the image width and height", where, parts[1:])
			}
		}
		// ultralytics' xywh2xyxy, in float32 as its tensors are.
		hw, hh := v[2]/2, v[3]/2
		out = append(out, Box{Class: cls, XYXY: [4]float32{v[0] - hw, v[1] - hh, v[0] + hw, v[1] + hh}})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
