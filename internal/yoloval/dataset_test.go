package yoloval

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDataResolvesFoldersAndNames(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "set", "images", "val", "a.jpg"), "x")
	write(t, filepath.Join(dir, "set", "images", "train", "b.PNG"), "x")
	write(t, filepath.Join(dir, "d.yaml"), "path: set\ntrain: images/train\nval: images/val\nnames:\n  1: car\n  0: person\n")
	d, err := LoadData(filepath.Join(dir, "d.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Val != filepath.Join(realPath(t, dir), "set", "images", "val") || strings.Join(d.Names, ",") != "person,car" {
		t.Fatalf("got %+v", d)
	}
	imgs, err := Images(context.Background(), filepath.Join(dir, "set", "images"))
	if err != nil || len(imgs) != 2 {
		t.Fatalf("Images: %v %v", imgs, err)
	}
	if got, want := LabelPath(imgs[0]), filepath.Join(dir, "set", "labels", "train", "b.txt"); got != want {
		t.Fatalf("LabelPath = %s, want %s", got, want)
	}
}

func TestDatasetErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "images", "val", "a.jpg"), "x")
	cases := []struct {
		name, yaml, labels, want string
	}{
		{"missing yaml", "", "", "nope.yaml: open"},
		{"val nowhere", "train: images/val\nval: images/gone\nnames: [a]\n", "", "val folder " + filepath.Join(dir, "images", "gone") + " does not exist"},
		{"no names", "train: images/val\nval: images/val\n", "", "names: missing"},
		{"class too big", "train: images/val\nval: images/val\nnames: [a, b]\n", "0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n", "l.txt:2: class 2 is outside 0..1"},
		{"coords", "train: images/val\nval: images/val\nnames: [a]\n", "\n0 0.5 1.2 0.1 0.1\n", "l.txt:2: box [0.5 1.2 0.1 0.1] has coordinates outside 0..1"},
		{"fields", "train: images/val\nval: images/val\nnames: [a]\n", "0 0.5 0.5 0.1\n", "l.txt:1: expected 5 values"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := filepath.Join(dir, "nope.yaml")
			if c.yaml != "" {
				y = filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
				write(t, y, c.yaml)
			}
			d, err := LoadData(y)
			if err == nil && c.labels != "" {
				l := filepath.Join(dir, "l.txt")
				write(t, l, c.labels)
				_, err = ReadLabels(l, len(d.Names))
			}
			testenv.WantError(t, err, c.want)
		})
	}
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// labelsOf loads the dataset YAML at yamlPath and reads the labels of every val image the way
// `stardetr eval` does; it returns the number of boxes per image's base name.
func labelsOf(t *testing.T, yamlPath string) map[string]int {
	t.Helper()
	d, err := LoadData(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := Images(context.Background(), d.Val)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, img := range imgs {
		boxes, err := ReadLabels(LabelPath(img), len(d.Names))
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(img)] = len(boxes)
	}
	return out
}

// Issue 23, finding 8: `stardetr eval --data rel.yaml` with `path: .`, run from the dataset's
// folder, found no labels (exit 0, mAP 0): img2label_paths looks for "/images/" in the path's
// text, which a relative path "images/val/a.jpg" lacks. As in ultralytics, the folder is
// resolved first: relative, absolute and linked paths find the same labels.
func TestLabelsFoundForRelativeAbsoluteAndLinkedPaths(t *testing.T) {
	root := t.TempDir()
	ds := filepath.Join(root, "ds")
	write(t, filepath.Join(ds, "images", "val", "a.jpg"), "x")
	write(t, filepath.Join(ds, "images", "val", "sub", "b.png"), "x")
	write(t, filepath.Join(ds, "labels", "val", "a.txt"), "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
	write(t, filepath.Join(ds, "labels", "val", "sub", "b.txt"), "1 0.5 0.5 0.2 0.2\n")
	write(t, filepath.Join(ds, "data.yaml"), "path: .\ntrain: images/val\nval: images/val\nnames: [a, b]\n")
	if err := os.Symlink(ds, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a.jpg": 2, "b.png": 1}
	check := func(name, yamlPath string) {
		t.Helper()
		got := labelsOf(t, yamlPath)
		if len(got) != len(want) || got["a.jpg"] != want["a.jpg"] || got["b.png"] != want["b.png"] {
			t.Errorf("%s (%s): boxes per image %v, want %v", name, yamlPath, got, want)
		}
	}
	check("absolute", filepath.Join(ds, "data.yaml"))
	check("linked folder", filepath.Join(root, "link", "data.yaml"))
	t.Chdir(ds)
	check("relative from the dataset's folder", "data.yaml")
	check("relative with ./", "./data.yaml")
	t.Chdir(filepath.Join(ds, "labels"))
	check("relative through ..", filepath.Join("..", "data.yaml"))
	t.Chdir(root)
	check("relative through the link", filepath.Join("link", "data.yaml"))
}

// withDeadline runs f and fails the test if it has not returned within 20 s, instead of
// hanging: on the code before the fix, opening a named pipe blocks until a writer comes.
// The blocked open is then released by opening the pipe for writing.
func withDeadline(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatalf("blocked for 20 s on the named pipe %s", fifo)
		return nil
	}
}

// Issue 23, finding 9: a named pipe called x.jpg among the images, or as a label file, hung
// eval forever. Both are refused up front, by a stat, with one error naming the file.
func TestNamedPipesAreRefusedNotOpened(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "images", "val", "a.jpg"), "x")
	imgFIFO := filepath.Join(dir, "images", "val", "x.jpg")
	if err := syscall.Mkfifo(imgFIFO, 0o644); err != nil {
		t.Fatal(err)
	}
	err := withDeadline(t, imgFIFO, func() error {
		_, err := Images(context.Background(), filepath.Join(dir, "images", "val"))
		return err
	})
	testenv.WantError(t, err, imgFIFO, "named pipe", "remove it")
	if err := os.Remove(imgFIFO); err != nil {
		t.Fatal(err)
	}
	// The same through a symbolic link.
	other := filepath.Join(dir, "elsewhere.fifo")
	if err := syscall.Mkfifo(other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, imgFIFO); err != nil {
		t.Fatal(err)
	}
	err = withDeadline(t, other, func() error {
		_, err := Images(context.Background(), filepath.Join(dir, "images", "val"))
		return err
	})
	testenv.WantError(t, err, imgFIFO, "named pipe")

	labelFIFO := filepath.Join(dir, "labels", "val", "a.txt")
	if err := os.MkdirAll(filepath.Dir(labelFIFO), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(labelFIFO, 0o644); err != nil {
		t.Fatal(err)
	}
	err = withDeadline(t, labelFIFO, func() error {
		_, err := ReadLabels(labelFIFO, 1)
		return err
	})
	testenv.WantError(t, err, labelFIFO, "named pipe", "not a label file")
	if _, err := ReadLabels("/dev/zero", 1); err == nil || !strings.Contains(err.Error(), "character device") {
		t.Errorf("/dev/zero as a label file: %v", err)
	}
}

// Listing a val set stops when its context ends (SIGTERM in `stardetr eval`).
func TestImagesStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.jpg"), "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Images(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
