# INT8 (QDQ) models from the float32 exports (see model/quantize/__main__.py). Needs the CARAFE plugin
# to calibrate and build/venv-perf (scripts/setup) for onnxruntime's quantizer.
.PHONY: test-quantize

VENV_PERF := build/venv-perf/bin/python
QUANT_SRC := $(wildcard model/quantize/*.py) model/reference/predict.py
QUANT_RUN := OMP_NUM_THREADS=2 $(VENV_PERF) -m model.quantize --plugin $(abspath $(PLUGIN))
# Calibration frames until a trained model's dataset is at hand: 16 frames of ffmpeg's test pattern.
CALIB    := $(MODELS)/calib/data.yaml

$(CALIB): $(SETUP_STAMP)
	@mkdir -p $(dir $@)/images
	ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=4 -t 4 -q:v 3 $(dir $@)/images/f%03d.jpg
	printf 'path: .\ntrain: images\nval: images\nnames: {0: person}\n' >$@

models: $(MODELS)/tiny-int8.onnx

# The tiny model in INT8, and its output0 on tiny.npz's inputs computed by onnxruntime (Python), for
# the runtime's golden tests.
$(MODELS)/tiny-int8.onnx $(MODELS)/tiny-int8.npz &: $(MODELS)/tiny.onnx $(MODELS)/tiny.npz $(CALIB) $(PLUGIN) $(QUANT_SRC)
	$(QUANT_RUN) --model $(MODELS)/tiny.onnx --data $(CALIB) --calib 16 --out $(MODELS)/tiny-int8.onnx \
		--golden-input $(MODELS)/tiny.npz --golden $(MODELS)/tiny-int8.npz

# The seed model at 640 in INT8, for the speed benchmark (make bench): not part of `make models`.
$(MODELS)/seed-640-int8.onnx: $(MODELS)/seed-640.onnx $(CALIB) $(PLUGIN) $(QUANT_SRC)
	$(QUANT_RUN) --model $(MODELS)/seed-640.onnx --data $(CALIB) --calib 16 --out $@

test-quantize: $(MODELS)/tiny-int8.onnx $(PLUGIN)
	OMP_NUM_THREADS=2 STARDETR_PLUGIN=$(abspath $(PLUGIN)) STARDETR_MODELS=$(abspath $(MODELS)) \
		$(VENV_PERF) -m unittest discover -s model/quantize/tests -t . $(if $(V),-v,)
