package imgsize_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	_ "image/jpeg" // image.DecodeConfig, the independent reference for JPEG and PNG
	_ "image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/imgsize"
	"github.com/stardetr/stardetr/internal/testenv"
)

// opencvFormats are the suffixes OpenCV writes in the formats imgsize knows, with the Mat type
// the encoder takes and extra imwrite parameters.
var opencvFormats = []struct {
	name   string
	ext    string
	mt     gocv.MatType
	params []int
}{
	{"png", ".png", gocv.MatTypeCV8UC3, nil},
	{"jpeg", ".jpg", gocv.MatTypeCV8UC3, nil},
	{"bmp", ".bmp", gocv.MatTypeCV8UC3, nil},
	{"tiff", ".tiff", gocv.MatTypeCV8UC3, nil},
	{"webp lossy", ".webp", gocv.MatTypeCV8UC3, []int{gocv.IMWriteWebpQuality, 80}},
	{"webp lossless", ".webp", gocv.MatTypeCV8UC3, []int{gocv.IMWriteWebpQuality, 101}},
	{"ppm", ".ppm", gocv.MatTypeCV8UC3, nil},
	{"pgm ascii", ".pgm", gocv.MatTypeCV8UC1, []int{gocv.IMWritePxmBinary, 0}},
	{"pbm", ".pbm", gocv.MatTypeCV8UC1, nil},
	{"pam", ".pam", gocv.MatTypeCV8UC3, nil},
	{"pfm", ".pfm", gocv.MatTypeCV32FC3, nil},
	{"sun raster", ".sr", gocv.MatTypeCV8UC3, nil},
	{"radiance hdr", ".hdr", gocv.MatTypeCV32FC3, nil},
	{"jpeg 2000", ".jp2", gocv.MatTypeCV8UC3, nil},
	{"pbm ascii", ".pbm", gocv.MatTypeCV8UC1, []int{gocv.IMWritePxmBinary, 0}},
	{"tif", ".tif", gocv.MatTypeCV8UC1, nil},
	{"dib", ".dib", gocv.MatTypeCV8UC3, nil},
	{"ras", ".ras", gocv.MatTypeCV8UC1, nil},
	{"pnm", ".pnm", gocv.MatTypeCV8UC3, nil},
}

// writeWithOpenCV writes a width×height picture with OpenCV's encoder for ext and returns
// the size OpenCV's imread decodes from it.
func writeWithOpenCV(t *testing.T, path string, mt gocv.MatType, params []int, width, height int) (int, int) {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(40, 90, 200, 0), height, width, mt)
	defer m.Close()
	if mt == gocv.MatTypeCV32FC3 {
		m.SetTo(gocv.NewScalar(0.2, 0.4, 0.8, 0))
	}
	ok := false
	if params == nil {
		ok = gocv.IMWrite(path, m)
	} else {
		ok = gocv.IMWriteWithParams(path, m, params)
	}
	if !ok {
		t.Fatalf("OpenCV cannot write %s", path)
	}
	back := gocv.IMRead(path, gocv.IMReadColor)
	defer back.Close()
	if back.Empty() {
		t.Fatalf("OpenCV cannot read back %s", path)
	}
	return back.Cols(), back.Rows()
}

// Size reads the size OpenCV decodes, for a file of every format it knows, written by OpenCV.
func TestSizeMatchesOpenCV(t *testing.T) {
	dir := t.TempDir()
	for _, f := range opencvFormats {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(f.name, " ", "_")+f.ext)
			w, h := writeWithOpenCV(t, path, f.mt, f.params, 67, 41)
			if w != 67 || h != 41 {
				t.Fatalf("OpenCV decodes %dx%d from its own 67x41 %s", w, h, f.ext)
			}
			info, err := imgsize.Size(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != int64(w) || info.Height != int64(h) {
				t.Errorf("Size: %s %d×%d, OpenCV decodes %d×%d", info.Format, info.Width, info.Height, w, h)
			}
			if strings.HasSuffix(path, ".png") || strings.HasSuffix(path, ".jpg") {
				fh, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer fh.Close()
				cfg, _, err := image.DecodeConfig(fh)
				if err != nil || int64(cfg.Width) != info.Width || int64(cfg.Height) != info.Height {
					t.Errorf("Go's image.DecodeConfig: %dx%d (%v), Size %d×%d", cfg.Width, cfg.Height, err, info.Width, info.Height)
				}
			}
		})
	}
}

// A bare JPEG 2000 codestream (OpenCV reads it, but writes only JP2): the jp2c box of a JP2.
func TestJ2KCodestream(t *testing.T) {
	dir := t.TempDir()
	jp2 := filepath.Join(dir, "x.jp2")
	writeWithOpenCV(t, jp2, gocv.MatTypeCV8UC3, nil, 67, 41)
	b, err := os.ReadFile(jp2)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("jp2c"))
	if i < 4 {
		t.Fatalf("%s has no jp2c box", jp2)
	}
	j2k := filepath.Join(dir, "x.j2k")
	if err := os.WriteFile(j2k, b[i+4:], 0o644); err != nil {
		t.Fatal(err)
	}
	m := gocv.IMRead(j2k, gocv.IMReadColor)
	defer m.Close()
	info, err := imgsize.Size(j2k)
	if err != nil || m.Empty() || info.Width != int64(m.Cols()) || info.Height != int64(m.Rows()) {
		t.Errorf("Size %+v (%v); OpenCV decodes %dx%d", info, err, m.Cols(), m.Rows())
	}
}

// A JPEG's EXIF thumbnail (a whole JPEG with its own frame header inside APP1) is skipped:
// the size is that of the picture, as libjpeg reads it.
func TestJPEGThumbnailIsNotThePicture(t *testing.T) {
	encode := func(w, h int) []byte {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 30, 0), h, w, gocv.MatTypeCV8UC3)
		defer m.Close()
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		return bytes.Clone(buf.GetBytes())
	}
	main, thumb := encode(64, 48), encode(8, 6)
	app1 := append([]byte("Exif\x00\x00"), thumb...)
	seg := binary.BigEndian.AppendUint16([]byte{0xFF, 0xE1}, uint16(2+len(app1)))
	file := append(append(append([]byte{}, main[:2]...), append(seg, app1...)...), main[2:]...)
	path := filepath.Join(t.TempDir(), "thumb.jpg")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := imgsize.Size(path)
	if err != nil || info.Width != 64 || info.Height != 48 {
		t.Fatalf("Size: %+v, %v; want 64×48", info, err)
	}
	m := gocv.IMRead(path, gocv.IMReadColor)
	defer m.Close()
	if m.Cols() != 64 || m.Rows() != 48 {
		t.Errorf("OpenCV decodes %dx%d", m.Cols(), m.Rows())
	}
}

// The decompression bomb of issue 23: a ~140 KB PNG claiming 30000×30000 is refused by its
// header, naming the file, the size and the cap.
func TestCheckRefusesABomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bomb.png")
	testenv.PNGBomb(t, path, 30000, 30000)
	_, err := imgsize.Check(path, imgsize.DefaultMaxPixels)
	testenv.WantError(t, err, path, "30000×30000", "67108864", "64 MP")
	var tl *imgsize.TooLargeError
	if !errors.As(err, &tl) {
		t.Errorf("%T is not a TooLargeError", err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if cfg, _, err := image.DecodeConfig(fh); err != nil || cfg.Width != 30000 || cfg.Height != 30000 {
		t.Errorf("the bomb is not a valid 30000x30000 PNG to Go's image/png: %+v, %v", cfg, err)
	}
	if info, err := imgsize.Check(path, 30000*30000); err != nil || info.Pixels() != 30000*30000 {
		t.Errorf("at a cap of exactly its size: %+v, %v", info, err)
	}
}

// Files that are not regular are refused after a stat: a named pipe called x.jpg never
// blocks the reader, which a plain open would until a writer comes.
func TestSizeRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.jpg")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.jpg")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{fifo, "named pipe"},
		{link, "named pipe"},
		{dir, "folder"},
		{"/dev/null", "character device"},
		{filepath.Join(dir, "nope.png"), "no such file"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		done := make(chan error, 1)
		go func() { _, err := imgsize.Size(c.path); done <- err }()
		select {
		case err := <-done:
			testenv.WantError(t, err, c.path, c.want)
		case <-ctx.Done():
			// A blocked open cannot be undone: unblock it by opening the pipe's other end.
			if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			t.Errorf("Size(%s) blocked for 30s", c.path)
			<-done
		}
		cancel()
	}
}

// A format imgsize does not know is refused, not handed to OpenCV unchecked. GIF stands for
// them: OpenCV 4.6 does not read it either.
func TestUnknownFormatIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gif")
	var b bytes.Buffer
	img := image.NewPaletted(image.Rect(0, 0, 5, 4), color.Palette{color.Black, color.White})
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := imgsize.Size(path)
	testenv.WantError(t, err, path, "unknown image format", "JPEG, PNG")
	if !errors.Is(err, imgsize.ErrUnknownFormat) {
		t.Errorf("%v is not ErrUnknownFormat", err)
	}
	m := gocv.IMRead(path, gocv.IMReadColor)
	defer m.Close()
	if !m.Empty() {
		t.Errorf("OpenCV reads GIF (%dx%d): imgsize should learn its header", m.Cols(), m.Rows())
	}
}

// Every cut of a real header is an error naming the format, never a panic or a size.
func TestTruncatedHeaders(t *testing.T) {
	dir := t.TempDir()
	for _, f := range opencvFormats {
		path := filepath.Join(dir, strings.ReplaceAll(f.name, " ", "_")+f.ext)
		writeWithOpenCV(t, path, f.mt, f.params, 67, 41)
		full, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < min(len(full), 40); n++ {
			info, err := imgsize.Read(bytes.NewReader(full[:n]), int64(n))
			if err == nil && (info.Width != 67 || info.Height != 41) {
				t.Errorf("%s cut to %d bytes: %+v without an error", f.name, n, info)
			}
		}
	}
}

// FuzzRead: no input panics, hangs or yields a size without pixels.
func FuzzRead(f *testing.F) {
	for _, seed := range []string{
		"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x75\x30\x00\x00\x75\x30\x01\x00\x00\x00\x00",
		"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03",
		"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x10\x00\x00\x00\xf0\xff\xff\xff",
		"II*\x00\x08\x00\x00\x00\x02\x00\x00\x01\x03\x00\x01\x00\x00\x00\x10\x00\x00\x00\x01\x01\x04\x00\x01\x00\x00\x00\x20\x00\x00\x00",
		"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\xff\x3f\x00\xff\x3f\x00",
		"P6\n# c\n640 480\n255\n",
		"P7\nWIDTH 4\nHEIGHT 2\nENDHDR\n",
		"PF\n3 2\n-1.0\n",
		"\x59\xa6\x6a\x95\x00\x00\x00\x10\x00\x00\x00\x08",
		"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x2djp2h\x00\x00\x00\x16ihdr\x00\x00\x00\x08\x00\x00\x00\x10",
		"\xff\x4f\xff\x51\x00\x29\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x10\x00\x00\x00\x10",
		"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 3\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := imgsize.Read(bytes.NewReader(b), int64(len(b)))
		if err == nil && (info.Width <= 0 || info.Height <= 0 || info.Format == "") {
			t.Errorf("%q: %+v without an error", b, info)
		}
	})
}
