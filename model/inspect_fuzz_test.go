package model

import (
	"os"
	"testing"

	"github.com/stardetr/stardetr/model/internal/onnxpb"
)

// FuzzParseONNX feeds arbitrary bytes to the ONNX reader (internal/onnxpb) and, when they
// parse, to the model inspection that reads the metadata (names, imgsz, stride): each must
// return a model or an error, never panic or hang. Seeds: testdata/fuzz/FuzzParseONNX (small generated models with
// good and bad metadata) and the exported tiny model when `make models` has run.
// Run: go test -run '^$' -fuzz FuzzParseONNX ./model/
func FuzzParseONNX(f *testing.F) {
	if b, err := os.ReadFile(os.Getenv("STARDETR_MODELS") + "/tiny.onnx"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnxpb.Parse(data)
		if err != nil {
			return
		}
		cfg := DefaultConfig()
		_, _ = inspectModel(m, &cfg)
	})
}
