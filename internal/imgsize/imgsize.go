// Package imgsize reads the width and height of a still image from its header, without
// decoding it, so that a file claiming a huge size (a "decompression bomb": a few hundred KB of
// PNG that inflate to gigabytes) is refused before OpenCV allocates its pixels.
//
// It knows the headers of the formats OpenCV's imread reads in the Debian build stardetr links
// (libopencv-imgcodecs 4.6): JPEG (and MPO), PNG, BMP, TIFF (classic and BigTIFF, and so DNG),
// WebP, PBM/PGM/PPM, PAM, PFM, Sun raster, JPEG 2000 (JP2 and a bare codestream) and Radiance
// HDR. A file of any other format is refused (ErrUnknownFormat): its size cannot be checked
// before decoding, and OpenCV, which picks its decoder by the same signatures, would either not
// read it (GIF: OpenCV 4.6 has no GIF decoder) or read one of the formats stardetr does not
// hand it on purpose (OpenEXR, DICOM).
//
// Files are opened without blocking (a named pipe called x.jpg is refused up front, never
// opened for a blocking read) and only regular files are read.
package imgsize

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"syscall"
)

// DefaultMaxPixels is the pixel cap of `stardetr infer`, `stardetr eval` and still images in
// the configuration: 64 megapixels (8192×8192), ~200 MB as a BGR picture.
const DefaultMaxPixels = 8192 * 8192

// ErrUnknownFormat is returned for a file whose header is none of the known formats.
var ErrUnknownFormat = errors.New("unknown image format")

// Formats lists the formats whose size Size reads, for messages.
const Formats = "JPEG, PNG, BMP, TIFF, WebP, PBM/PGM/PPM/PAM/PFM, Sun raster, JPEG 2000 or Radiance HDR"

// Info is what a header says.
type Info struct {
	Format        string // "png", "jpeg", ...
	Width, Height int64
}

// Pixels is Width×Height (math.MaxInt64 where that overflows).
func (i Info) Pixels() int64 {
	if i.Width <= 0 || i.Height <= 0 {
		return 0
	}
	if i.Height > math.MaxInt64/i.Width {
		return math.MaxInt64
	}
	return i.Width * i.Height
}

// Check reads the header of the image at path and refuses it when it holds more than maxPixels
// pixels. Every error names the file; one over the cap also names its size and the cap.
func Check(path string, maxPixels int64) (Info, error) {
	info, err := Size(path)
	if err != nil {
		return info, err
	}
	if info.Pixels() > maxPixels {
		return info, &TooLargeError{Path: path, Info: info, Max: maxPixels}
	}
	return info, nil
}

// TooLargeError is Check's refusal of a picture above the cap.
type TooLargeError struct {
	Path string
	Info Info
	Max  int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("image %s: %s of %d×%d pixels is above the cap of %d pixels%s: scale it down",
		e.Path, e.Info.Format, e.Info.Width, e.Info.Height, e.Max, megapixels(e.Max))
}

// megapixels writes n as " (N MP)" in binary megapixels (2^20: the default cap, 8192×8192, is
// 64 MP), or "" below one.
func megapixels(n int64) string {
	if n < 1<<20 {
		return ""
	}
	return " (" + strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MP)"
}

// Size reads the format and size of the image at path from its header. A file that is not
// regular (a named pipe, a device, a folder) is refused after a stat, before any open that
// could block; an unknown format is ErrUnknownFormat, wrapped with the file's name.
func Size(path string) (Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("image %s: %w", path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("image %s: is %s, not a regular file: give an image file", path, Kind(st.Mode()))
	}
	// O_NONBLOCK: should the file have become a named pipe since the stat, the open does not
	// wait for a writer; the second stat then refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Info{}, fmt.Errorf("image %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return Info{}, fmt.Errorf("image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("image %s: is %s, not a regular file: give an image file", path, Kind(st.Mode()))
	}
	info, err := Read(f, st.Size())
	if err != nil {
		return info, fmt.Errorf("image %s: %w", path, err)
	}
	return info, nil
}

// Kind names what a non-regular file is, for messages.
func Kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Read reads the header of an image of size bytes.
func Read(r io.ReaderAt, size int64) (Info, error) {
	var head [32]byte
	n, err := r.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Info{}, err
	}
	h := head[:n]
	var info Info
	switch {
	case bytes.HasPrefix(h, []byte("\x89PNG\r\n\x1a\n")):
		info, err = readPNG(h)
	case bytes.HasPrefix(h, []byte{0xFF, 0xD8}):
		info, err = readJPEG(r, size)
	case bytes.HasPrefix(h, []byte("BM")):
		info, err = readBMP(h)
	case bytes.HasPrefix(h, []byte("II*\x00")), bytes.HasPrefix(h, []byte("MM\x00*")),
		bytes.HasPrefix(h, []byte("II+\x00")), bytes.HasPrefix(h, []byte("MM\x00+")):
		info, err = readTIFF(r, size)
	case len(h) >= 12 && bytes.Equal(h[:4], []byte("RIFF")) && bytes.Equal(h[8:12], []byte("WEBP")):
		info, err = readWebP(h)
	case len(h) >= 2 && h[0] == 'P' && (h[1] >= '1' && h[1] <= '7' || h[1] == 'F' || h[1] == 'f'):
		info, err = readPNM(io.NewSectionReader(r, 0, size))
	case bytes.HasPrefix(h, []byte{0x59, 0xA6, 0x6A, 0x95}):
		info, err = readSunRaster(h)
	case bytes.HasPrefix(h, []byte("\x00\x00\x00\x0cjP  \r\n\x87\n")):
		info, err = readJP2(r, size)
	case bytes.HasPrefix(h, []byte{0xFF, 0x4F, 0xFF, 0x51}):
		info, err = readJ2K(h)
	case bytes.HasPrefix(h, []byte("#?RADIANCE")), bytes.HasPrefix(h, []byte("#?RGBE")):
		info, err = readHDR(io.NewSectionReader(r, 0, size))
	default:
		return Info{}, fmt.Errorf("%w: stardetr reads %s images, and checks their size before decoding them: convert it to JPEG or PNG", ErrUnknownFormat, Formats)
	}
	if err != nil {
		return info, fmt.Errorf("%s header: %w", info.Format, err)
	}
	if info.Width <= 0 || info.Height <= 0 {
		return info, fmt.Errorf("%s header: size %d×%d: a picture needs at least one pixel", info.Format, info.Width, info.Height)
	}
	return info, nil
}

var errShort = errors.New("truncated")

func readPNG(h []byte) (Info, error) {
	info := Info{Format: "PNG"}
	// signature, IHDR length (13), "IHDR", width, height
	if len(h) < 24 {
		return info, errShort
	}
	if string(h[12:16]) != "IHDR" {
		return info, errors.New("the first chunk is not IHDR")
	}
	info.Width = int64(binary.BigEndian.Uint32(h[16:20]))
	info.Height = int64(binary.BigEndian.Uint32(h[20:24]))
	return info, nil
}

// readJPEG walks the markers to the first frame header (SOF0..SOF15 but DHT, JPG and DAC),
// skipping segments by their length, so that an EXIF thumbnail inside APP1 is not taken for
// the picture. Bytes between segments that are not a marker are skipped, as libjpeg skips
// them (with a warning), so that both find the same frame header.
func readJPEG(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Format: "JPEG"}
	br := bufio.NewReader(io.NewSectionReader(r, 2, size-2))
	for {
		b, err := br.ReadByte()
		if err != nil {
			return info, errors.New("no frame header (SOF) before the end of the file")
		}
		if b != 0xFF {
			continue
		}
		m := byte(0xFF)
		for m == 0xFF { // fill bytes
			if m, err = br.ReadByte(); err != nil {
				return info, errShort
			}
		}
		switch {
		case m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7): // no length
			continue
		case m == 0xD9 || m == 0xDA:
			return info, errors.New("no frame header (SOF) before the image data")
		}
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return info, errShort
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if n < 2 {
			return info, fmt.Errorf("segment 0x%02x has length %d", m, n)
		}
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			var sof [5]byte // precision, height, width
			if n < 2+len(sof) {
				return info, errShort
			}
			if _, err := io.ReadFull(br, sof[:]); err != nil {
				return info, errShort
			}
			info.Height = int64(binary.BigEndian.Uint16(sof[1:3]))
			info.Width = int64(binary.BigEndian.Uint16(sof[3:5]))
			if info.Height == 0 {
				return info, errors.New("height 0 (defined later by a DNL marker), which OpenCV does not read")
			}
			return info, nil
		}
		if _, err := br.Discard(n - 2); err != nil {
			return info, errShort
		}
	}
}

func readBMP(h []byte) (Info, error) {
	info := Info{Format: "BMP"}
	if len(h) < 26 {
		return info, errShort
	}
	if binary.LittleEndian.Uint32(h[14:18]) == 12 { // OS/2 BITMAPCOREHEADER
		info.Width = int64(binary.LittleEndian.Uint16(h[18:20]))
		info.Height = int64(binary.LittleEndian.Uint16(h[20:22]))
		return info, nil
	}
	info.Width = int64(int32(binary.LittleEndian.Uint32(h[18:22])))
	info.Height = int64(int32(binary.LittleEndian.Uint32(h[22:26])))
	if info.Height < 0 { // top-down rows
		info.Height = -info.Height
	}
	return info, nil
}

// readTIFF reads ImageWidth (256) and ImageLength (257) of the first IFD, the picture imread
// decodes.
func readTIFF(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Format: "TIFF"}
	d, err := firstTIFFDir(r, size)
	if err != nil {
		return info, err
	}
	entries, err := d.readEntries(r, size)
	if err != nil {
		return info, err
	}
	for i := int64(0); i < int64(len(entries))/d.entrySize; i++ {
		e := entries[i*d.entrySize : (i+1)*d.entrySize]
		tag := d.bo.Uint16(e[0:2])
		if tag != 256 && tag != 257 {
			continue
		}
		v, err := d.entryValue(e)
		if err != nil {
			return info, err
		}
		if tag == 256 {
			info.Width = v
		} else {
			info.Height = v
		}
	}
	if info.Width == 0 || info.Height == 0 {
		return info, errors.New("the first IFD lacks ImageWidth or ImageLength")
	}
	return info, nil
}

// tiffDir is where a TIFF's image file directory (IFD) lies and how it is encoded: the
// file's byte order, and for BigTIFF 8-byte counts and 20-byte entries (classic: 2 and 12).
type tiffDir struct {
	bo                   binary.ByteOrder
	big                  bool
	off                  int64
	countSize, entrySize int64
}

// firstTIFFDir reads the TIFF or BigTIFF header: byte order, version, and the offset of the
// first IFD, which must lie inside the file's size bytes.
func firstTIFFDir(r io.ReaderAt, size int64) (tiffDir, error) {
	var hdr [16]byte
	if _, err := r.ReadAt(hdr[:8], 0); err != nil {
		return tiffDir{}, errShort
	}
	d := tiffDir{bo: binary.LittleEndian, countSize: 2, entrySize: 12}
	if hdr[0] == 'M' {
		d.bo = binary.BigEndian
	}
	d.big = d.bo.Uint16(hdr[2:4]) == 43
	if d.big {
		if _, err := r.ReadAt(hdr[:16], 0); err != nil {
			return d, errShort
		}
		if d.bo.Uint16(hdr[4:6]) != 8 {
			return d, errors.New("BigTIFF offsets are not 8 bytes")
		}
		d.off = int64(d.bo.Uint64(hdr[8:16]))
		d.countSize, d.entrySize = 8, 20
	} else {
		d.off = int64(d.bo.Uint32(hdr[4:8]))
	}
	if d.off < 8 || d.off+d.countSize > size {
		return d, fmt.Errorf("first IFD offset %d is outside the file", d.off)
	}
	return d, nil
}

// readEntries reads the IFD's entry count and its entries, refusing a count the file's size
// bytes cannot hold.
func (d tiffDir) readEntries(r io.ReaderAt, size int64) ([]byte, error) {
	var cnt [8]byte
	if _, err := r.ReadAt(cnt[:d.countSize], d.off); err != nil {
		return nil, errShort
	}
	var n int64
	if d.big {
		n = int64(d.bo.Uint64(cnt[:]))
	} else {
		n = int64(d.bo.Uint16(cnt[:2]))
	}
	if n <= 0 || n > 65535 || d.off+d.countSize+n*d.entrySize > size {
		return nil, fmt.Errorf("first IFD has %d entries, beyond the file's end", n)
	}
	entries := make([]byte, n*d.entrySize)
	if _, err := r.ReadAt(entries, d.off+d.countSize); err != nil {
		return nil, errShort
	}
	return entries, nil
}

// entryValue is the value of the one-number entry e (SHORT, LONG, or LONG8 in BigTIFF).
func (d tiffDir) entryValue(e []byte) (int64, error) {
	tag, typ := d.bo.Uint16(e[0:2]), d.bo.Uint16(e[2:4])
	val := e[8:]
	if d.big {
		val = e[12:]
	}
	switch typ {
	case 3: // SHORT
		return int64(d.bo.Uint16(val[:2])), nil
	case 4: // LONG
		return int64(d.bo.Uint32(val[:4])), nil
	case 16: // LONG8
		if !d.big {
			return 0, fmt.Errorf("tag %d has type LONG8 in a classic TIFF", tag)
		}
		v := int64(d.bo.Uint64(val[:8]))
		if v < 0 {
			return 0, fmt.Errorf("tag %d is %d", tag, d.bo.Uint64(val[:8]))
		}
		return v, nil
	default:
		return 0, fmt.Errorf("tag %d has type %d, not SHORT or LONG", tag, typ)
	}
}

func readWebP(h []byte) (Info, error) {
	info := Info{Format: "WebP"}
	if len(h) < 30 {
		return info, errShort
	}
	switch string(h[12:16]) {
	case "VP8 ": // lossy: frame tag (3), start code 9d 01 2a, 14-bit width and height
		if !bytes.Equal(h[23:26], []byte{0x9d, 0x01, 0x2a}) {
			return info, errors.New("VP8 start code missing")
		}
		info.Width = int64(binary.LittleEndian.Uint16(h[26:28]) & 0x3fff)
		info.Height = int64(binary.LittleEndian.Uint16(h[28:30]) & 0x3fff)
	case "VP8L": // lossless: signature 0x2f, 14 bits width-1, 14 bits height-1
		if h[20] != 0x2f {
			return info, errors.New("VP8L signature missing")
		}
		bits := binary.LittleEndian.Uint32(h[21:25])
		info.Width = int64(bits&0x3fff) + 1
		info.Height = int64(bits>>14&0x3fff) + 1
	case "VP8X": // extended: flags (4), 24 bits canvas width-1, 24 bits canvas height-1
		info.Width = int64(uint32(h[24])|uint32(h[25])<<8|uint32(h[26])<<16) + 1
		info.Height = int64(uint32(h[27])|uint32(h[28])<<8|uint32(h[29])<<16) + 1
	default:
		return info, fmt.Errorf("unknown chunk %q", h[12:16])
	}
	return info, nil
}

// maxTextHeader bounds the text headers (PNM, PAM, PFM, Radiance HDR) read before their
// size: real ones are a few lines.
const maxTextHeader = 64 << 10

// readPNM reads P1..P6 (width height after the magic, # comments allowed), P7 (PAM: WIDTH
// and HEIGHT lines up to ENDHDR) and PF/Pf (PFM).
func readPNM(r io.Reader) (Info, error) {
	br := bufio.NewReader(io.LimitReader(r, maxTextHeader))
	magic := make([]byte, 2)
	if _, err := io.ReadFull(br, magic); err != nil {
		return Info{Format: "PNM"}, errShort
	}
	switch magic[1] {
	case '7':
		return readPAM(br)
	case 'F', 'f':
		info := Info{Format: "PFM"}
		w, h, err := twoInts(br, false)
		info.Width, info.Height = w, h
		return info, err
	}
	info := Info{Format: "PNM"}
	w, h, err := twoInts(br, true)
	info.Width, info.Height = w, h
	return info, err
}

// twoInts reads two decimal numbers separated by white space (and # comments when comments).
func twoInts(br *bufio.Reader, comments bool) (int64, int64, error) {
	var v [2]int64
	for i := range v {
		tok, err := token(br, comments)
		if err != nil {
			return 0, 0, err
		}
		if v[i], err = strconv.ParseInt(tok, 10, 64); err != nil || v[i] < 0 {
			return 0, 0, fmt.Errorf("size %q is not a number", tok)
		}
	}
	return v[0], v[1], nil
}

// token returns the next run of non-space bytes and the white space ending it, skipping white
// space and, when comments is set, # comments to the end of the line.
func token(br *bufio.Reader, comments bool) (string, error) {
	var tok []byte
	for {
		c, err := br.ReadByte()
		if err != nil { // the header ends in white space: a number at the end may be cut
			return "", errShort
		}
		switch {
		case c == '#' && comments && len(tok) == 0:
			if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return "", errShort
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if len(tok) > 0 {
				return string(tok), nil
			}
		default:
			if len(tok) > 20 {
				return "", fmt.Errorf("size %q… is not a number", tok)
			}
			tok = append(tok, c)
		}
	}
}

func readPAM(br *bufio.Reader) (Info, error) {
	info := Info{Format: "PAM"}
	for {
		line, err := br.ReadString('\n')
		if err != nil && line == "" {
			return info, errors.New("no ENDHDR line")
		}
		f := bytes.Fields([]byte(line))
		if len(f) == 0 || f[0][0] == '#' {
			continue
		}
		switch string(f[0]) {
		case "ENDHDR":
			if info.Width == 0 || info.Height == 0 {
				return info, errors.New("no WIDTH or HEIGHT before ENDHDR")
			}
			return info, nil
		case "WIDTH", "HEIGHT":
			if len(f) < 2 {
				return info, fmt.Errorf("%s without a value", f[0])
			}
			v, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil || v < 0 {
				return info, fmt.Errorf("%s %q is not a number", f[0], f[1])
			}
			if f[0][0] == 'W' {
				info.Width = v
			} else {
				info.Height = v
			}
		}
	}
}

func readSunRaster(h []byte) (Info, error) {
	info := Info{Format: "Sun raster"}
	if len(h) < 12 {
		return info, errShort
	}
	info.Width = int64(binary.BigEndian.Uint32(h[4:8]))
	info.Height = int64(binary.BigEndian.Uint32(h[8:12]))
	return info, nil
}

// readJP2 finds the image header box (ihdr) inside the JP2 header box (jp2h).
func readJP2(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Format: "JPEG 2000"}
	off, end := int64(0), size
	for boxes := 0; off+8 <= end && boxes < 1024; boxes++ {
		var b [16]byte
		if _, err := r.ReadAt(b[:8], off); err != nil {
			return info, errShort
		}
		l, typ, hdr := int64(binary.BigEndian.Uint32(b[:4])), string(b[4:8]), int64(8)
		switch l {
		case 0: // to the end
			l = end - off
		case 1: // 64-bit length follows
			if _, err := r.ReadAt(b[8:16], off+8); err != nil {
				return info, errShort
			}
			l, hdr = int64(binary.BigEndian.Uint64(b[8:16])), 16
		}
		if l < hdr || off+l > end {
			return info, fmt.Errorf("box %q has length %d beyond its container", typ, l)
		}
		switch typ {
		case "jp2h": // descend
			off, end = off+hdr, off+l
			continue
		case "ihdr": // height, width
			if l < hdr+8 {
				return info, errShort
			}
			if _, err := r.ReadAt(b[:8], off+hdr); err != nil {
				return info, errShort
			}
			info.Height = int64(binary.BigEndian.Uint32(b[:4]))
			info.Width = int64(binary.BigEndian.Uint32(b[4:8]))
			return info, nil
		}
		off += l
	}
	return info, errors.New("no image header box (ihdr)")
}

// readJ2K reads a codestream's SIZ segment: the reference grid minus its offset.
func readJ2K(h []byte) (Info, error) {
	info := Info{Format: "JPEG 2000"}
	if len(h) < 24 {
		return info, errShort
	}
	x, y := int64(binary.BigEndian.Uint32(h[8:12])), int64(binary.BigEndian.Uint32(h[12:16]))
	x0, y0 := int64(binary.BigEndian.Uint32(h[16:20])), int64(binary.BigEndian.Uint32(h[20:24]))
	info.Width, info.Height = x-x0, y-y0
	return info, nil
}

// readHDR skips the header lines to the empty one; the next line is the resolution, e.g.
// "-Y 480 +X 640" (rows first) or "+X 640 -Y 480".
func readHDR(r io.Reader) (Info, error) {
	info := Info{Format: "Radiance HDR"}
	br := bufio.NewReader(io.LimitReader(r, maxTextHeader))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return info, errors.New("no empty line ending the header")
		}
		if line == "\n" || line == "\r\n" {
			break
		}
	}
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return info, errShort
	}
	f := bytes.Fields([]byte(line))
	if len(f) != 4 || len(f[0]) != 2 || len(f[2]) != 2 {
		return info, fmt.Errorf("resolution line %q is not like -Y 480 +X 640", bytes.TrimSpace([]byte(line)))
	}
	a, errA := strconv.ParseInt(string(f[1]), 10, 64)
	b, errB := strconv.ParseInt(string(f[3]), 10, 64)
	if errA != nil || errB != nil {
		return info, fmt.Errorf("resolution line %q is not like -Y 480 +X 640", bytes.TrimSpace([]byte(line)))
	}
	if f[0][1] == 'Y' {
		info.Height, info.Width = a, b
	} else {
		info.Width, info.Height = a, b
	}
	return info, nil
}
