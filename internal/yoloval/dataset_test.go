package yoloval

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if d.Val != filepath.Join(dir, "set", "images", "val") || strings.Join(d.Names, ",") != "person,car" {
		t.Fatalf("got %+v", d)
	}
	imgs, err := Images(filepath.Join(dir, "set", "images"))
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
