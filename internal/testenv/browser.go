package testenv

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Screenshot loads url in Debian's headless Chromium (800x600) and returns the picture it took.
func Screenshot(t testing.TB, url string) image.Image {
	t.Helper()
	return ScreenshotAfter(t, url, 3*time.Second)
}

// ScreenshotAfter is Screenshot taken wait after the page starts loading: a page whose
// pictures arrive later (the first frame of a stream on a busy machine) needs longer.
func ScreenshotAfter(t testing.TB, url string, wait time.Duration) image.Image {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run scripts/setup (make test installs it)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), wait+60*time.Second)
	defer cancel()
	// --timeout takes the picture that long after the load starts: an MJPEG stream never
	// finishes loading.
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=800,600", fmt.Sprintf("--timeout=%d", wait.Milliseconds()),
		"--screenshot="+out, url)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("chromium took no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// RGB returns the 8-bit colour of the pixel at x, y.
func RGB(img image.Image, x, y int) (int, int, int) {
	r, g, b, _ := img.At(x, y).RGBA()
	return int(r >> 8), int(g >> 8), int(b >> 8)
}

func isGreen(img image.Image, x, y int) bool {
	r, g, b := RGB(img, x, y)
	return g > 150 && r < 120 && b < 120
}

// DetectionBoxes finds the detection boxes the live view draws (green): the green horizontal runs
// of at least minRun pixels are their top and bottom edges (label glyphs have no runs that long).
// It returns each run, top to bottom, and their union.
func DetectionBoxes(img image.Image, minRun int) (runs []image.Rectangle, union image.Rectangle) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		run := 0
		for x := b.Min.X; x <= b.Max.X; x++ {
			if x < b.Max.X && isGreen(img, x, y) {
				run++
				continue
			}
			if run >= minRun {
				r := image.Rect(x-run, y, x, y+1)
				if len(runs) == 0 {
					union = r
				}
				union = union.Union(r)
				runs = append(runs, r)
			}
			run = 0
		}
	}
	return runs, union
}
