# stardetr build. `make run` and `make test` work on a fresh Debian 12 machine with no other step.
SHELL := /bin/bash
.DEFAULT_GOAL := build

include scripts/versions.env

GOARCH   ?= $(shell go env GOARCH)
ORT_ARCH := $(if $(filter arm64,$(GOARCH)),arm64,x64)
BUILD    := build/$(GOARCH)
ORT_DIR  := third_party/onnxruntime/$(ORT_VERSION)
ORT_LIB  := $(ORT_DIR)/$(ORT_ARCH)/libonnxruntime.so.1
PLUGIN   := $(BUILD)/libstardetr_carafe.so
MODELS   := build/models
PY       := /usr/bin/python3
# gocv with only core, imgproc, imgcodecs and videoio: links 4 OpenCV libraries, compiles against 4.6.
GOTAGS   := gocv_specific_modules,gocv_videoio
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS  := -X github.com/stardetr/stardetr/daemon.Version=$(VERSION)
BIN      := bin/stardetr
SETUP_STAMP := build/.setup-$(ORT_VERSION)

# Tests and the daemon find the runtime pieces through these (see internal/testenv and model).
export STARDETR_ONNXRUNTIME ?= $(abspath $(ORT_LIB))
export STARDETR_PLUGIN      ?= $(abspath $(PLUGIN))
export STARDETR_MODELS      ?= $(abspath $(MODELS))
export OMP_NUM_THREADS      ?= 2
export OMP_WAIT_POLICY      ?= PASSIVE
export STARDETR_PYTHON      ?= $(PY)

.PHONY: setup build plugin models demo-clip demo-screenshot run test test-go bench bench-peers test-peers-smoke soak soak-memory vet fmt clean

setup:
	scripts/setup
	@mkdir -p build && touch $(SETUP_STAMP)

$(SETUP_STAMP): scripts/setup scripts/versions.env
	scripts/setup
	@mkdir -p build && touch $@

build: $(SETUP_STAMP) $(BIN)

$(BIN): $(SETUP_STAMP) $(shell find . -name '*.go' -not -path './build/*' -not -path './third_party/*') go.mod go.sum
	@mkdir -p $(dir $@)
	go build -tags $(GOTAGS) -ldflags "$(LDFLAGS)" -o $@ ./cmd/stardetr

include model/carafe/carafe.mk
include model/reference/reference.mk
include model/quantize/quantize.mk
include model/train/train.mk
include packaging/packaging.mk

# The demo's clip: model.data.synth's moving shapes (the demo model's four classes), 30 s at 10 fps,
# 640x360, generated deterministically (seed 0) with its MOT ground truth (build/demo/gt.txt).
DEMO_CLIP := build/demo/clip.mp4
$(DEMO_CLIP): $(SETUP_STAMP) model/data/synth.py
	@mkdir -p $(dir $@)
	$(PY) -m model.data.synth --out $(dir $@) --video --frames 300 --width 640 --height 360 --fps 10 --seed 0 >/dev/null

demo-clip: $(DEMO_CLIP)

run: build plugin models $(DEMO_CLIP)
	$(BIN) run --config configs/demo.yaml

# The README's picture of the demo's live view: the Chromium screenshot of daemon/demo_test.go.
demo-screenshot: build plugin models
	@mkdir -p docs
	STARDETR_DEMO_SCREENSHOT=$(CURDIR)/docs/demo-live.png go test -tags $(GOTAGS) -count=1 -run '^TestDemoLiveView$$' -v ./daemon/


# Not part of `make test`: an hour (SOAK_DURATION=10m for a short one) of 4 cameras, broker and
# camera outages, and a subscriber checking every seq; see daemon/soak_test.go.
SOAK_DURATION ?= 1h
soak: build plugin models
	SOAK_DURATION=$(SOAK_DURATION) go test -tags $(GOTAGS),soak -run '^TestSoak$$' -timeout 0 -count=1 -v ./daemon/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	go vet -tags $(GOTAGS) ./...

test-go: $(SETUP_STAMP) plugin models
	# -timeout: the daemon package alone runs for minutes (real daemons, brokers, clips); the default 10 m
	# is too close on a slow or busy 2-core machine.
	go test -tags $(GOTAGS) -count=1 -timeout 30m ./...
	# gocv's matprofile build counts every Mat: no Mat leaks across reconnects and shutdown.
	go test -tags $(GOTAGS),matprofile -count=1 -run MatProfile ./camera/...

test: build plugin models vet test-carafe test-reference test-quantize test-train test-gpu-smoke test-peers-smoke test-go

bench: build plugin models bench-carafe $(MODELS)/seed-640-int8.onnx $(MODELS)/seed-640-dynamic.onnx
	go test -tags $(GOTAGS) -run '^$$' -bench . -benchmem ./...

# stardetr against ultralytics/PyTorch, ONNX Runtime (Python) and OpenVINO on the same frames (scripts/bench-peers).
bench-peers: build plugin models $(MODELS)/seed-640-standard.onnx
	scripts/bench-peers

test-peers-smoke: build plugin models $(MODELS)/tiny-standard.onnx
	scripts/bench-peers --smoke

# The demo's resident memory after 1, 10 and 60 minutes (SOAK_MINUTES="1 10 60"): growth < 5%.
soak-memory: build plugin models $(DEMO_CLIP)
	scripts/soak-memory

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin build dist
