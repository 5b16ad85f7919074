package model_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// openIn opens cfg with stateDir as the state folder and logs into log.
func openIn(t *testing.T, cfg model.Config, stateDir string, log *bytes.Buffer) *model.Detector {
	t.Helper()
	d, err := model.OpenWith(context.Background(), cfg, stateDir, slogTo(log), libsearch.DefaultLocator())
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Path, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// The first start with a model writes its optimised copy; the next maps it and computes what
// the reference computed, CARAFE plugin and INT8 included.
func TestMappedWeightsMatchGolden(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-int8"} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, testenv.Model(t, name+".onnx"))
			cfg.Plugin = testenv.Plugin(t)
			state := t.TempDir()
			var log bytes.Buffer
			first := openIn(t, cfg, state, &log)
			if q := first.Info().Quantized; q != (name == "tiny-int8") {
				t.Errorf("%s: Info().Quantized %v", name, q)
			}
			if w := first.Info().Weights; w != "" {
				t.Fatalf("the first start mapped %s: there was nothing to map yet", w)
			}
			checkGolden(t, first, name)
			_ = first.Close()
			files, _ := filepath.Glob(filepath.Join(state, "optimized", "*.ort"))
			if len(files) != 1 {
				t.Fatalf("optimised copies after the first start: %v (log:\n%s)", files, log.String())
			}
			second := openIn(t, cfg, state, &log)
			if w := second.Info().Weights; w != files[0] {
				t.Fatalf("the second start's weights come from %q, want the mapped %s (log:\n%s)", w, files[0], log.String())
			}
			checkGolden(t, second, name)

			cfg.Memory.MapWeights = false
			off := openIn(t, cfg, t.TempDir(), &log)
			if w := off.Info().Weights; w != "" {
				t.Errorf("model.memory.map_weights: false still mapped %s", w)
			}
		})
	}
}

// A damaged optimised copy costs a warning and is written again; a state folder where the
// copy cannot be written leaves the weights on the heap, with a warning. Neither fails Open.
func TestMappedWeightsSurviveBadCache(t *testing.T) {
	cfg := testConfig(t, testenv.Model(t, "tiny.onnx"))
	cfg.Plugin = testenv.Plugin(t)
	state := t.TempDir()
	var log bytes.Buffer
	_ = openIn(t, cfg, state, &log).Close()
	files, _ := filepath.Glob(filepath.Join(state, "optimized", "*.ort"))
	if len(files) != 1 {
		t.Fatalf("optimised copies: %v", files)
	}
	garbage := bytes.Repeat([]byte("not a flatbuffer "), 1000)
	if err := os.WriteFile(files[0], garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	d := openIn(t, cfg, state, &log)
	if d.Info().Weights != "" || !strings.Contains(log.String(), "cannot be used; writing it again") {
		t.Errorf("a damaged copy: weights %q, log:\n%s", d.Info().Weights, log.String())
	}
	checkGolden(t, d, "tiny")
	_ = d.Close()
	if b, err := os.ReadFile(files[0]); err != nil || bytes.Equal(b, garbage) {
		t.Fatalf("the damaged copy was not written again (%v)", err)
	}
	if d := openIn(t, cfg, state, &log); d.Info().Weights != files[0] {
		t.Errorf("after the rewrite the weights come from %q, want %s", d.Info().Weights, files[0])
	}

	blocked := t.TempDir()
	if err := os.WriteFile(filepath.Join(blocked, "optimized"), nil, 0o600); err != nil { // a file where the folder goes
		t.Fatal(err)
	}
	log.Reset()
	d = openIn(t, cfg, blocked, &log)
	if d.Info().Weights != "" || !strings.Contains(log.String(), "cannot keep an optimised copy") {
		t.Errorf("an unwritable state folder: weights %q, log:\n%s", d.Info().Weights, log.String())
	}
	checkGolden(t, d, "tiny")
}

// slogTo logs at debug level into buf.
func slogTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
