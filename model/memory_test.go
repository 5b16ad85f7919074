package model_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// TestOpenKeepsModelBytesOffHeap: the model file's bytes never reach the Go heap, so they
// cannot stay resident after the session is built (Go returns freed heap to the system only
// slowly, and a daemon that allocates nothing per frame may never collect them at all). Open
// allocates far less than the file's size on the Go heap, and what is in use afterwards is
// below it too.
func TestOpenKeepsModelBytesOffHeap(t *testing.T) {
	path := testenv.Model(t, "seed-160.onnx")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(st.Size())
	cfg := testConfig(t, path)
	cfg.Plugin = testenv.Plugin(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := openDetector(t, cfg)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("model %d bytes; Open allocated %d bytes on the Go heap; heap in use after start-up %d bytes",
		size, allocated, after.HeapInuse)
	if allocated > size/4 {
		t.Errorf("Open allocated %d bytes on the Go heap for a %d-byte model: the file's bytes went through Go", allocated, size)
	}
	if after.HeapInuse > size/2 {
		t.Errorf("Go heap in use after Open is %d bytes, for a %d-byte model: want it well below the model's size", after.HeapInuse, size)
	}
	if d.Info().SHA256 == "" {
		t.Error("no SHA256 in Info: the file was not hashed")
	}
}
