// Package pageout gives back to the kernel the pages of the process's read-only file
// mappings (its executable and shared libraries). Loading a program touches far more of its
// libraries than it ever uses again: the dynamic loader reads the symbol and relocation tables
// of every library and runs their initialisers, and the kernel maps neighbouring pages on each
// fault. Debian's OpenCV pulls in ~245 libraries (FFmpeg, GStreamer, GDAL, …), and start-up
// leaves ~70 MB of them resident that the daemon never touches again (README, "Memory").
// Those pages are clean and backed by their files: giving them back loses nothing, and a page
// that is used again is read back on its next touch (from the page cache when it is still
// there), as it would be after the kernel reclaimed it under memory pressure.
package pageout

// Result is what one Release did.
type Result struct {
	Mappings int   // read-only file mappings advised
	Bytes    int64 // their total size (virtual, not resident)
}
