# The PyTorch reference of the seed model and its ONNX exports (see model/reference/export.py).
# Models are written to the git-ignored $(MODELS); each is rebuilt only when the Python sources change.
REF_DIR  := model/reference
REF_SRC  := $(filter-out $(REF_DIR)/report.py $(REF_DIR)/predict.py,$(wildcard $(REF_DIR)/*.py))
# torch defaults to one thread here; two, and no busy-waiting, on a shared 2-core machine.
REF_RUN  := OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(PY) -m model.reference.export
REF_MODELS := $(MODELS)/seed-640.onnx $(MODELS)/seed-160.onnx $(MODELS)/seed-160.npz \
	$(MODELS)/tiny.onnx $(MODELS)/tiny.npz $(MODELS)/tiny-dynamic.onnx $(MODELS)/tiny-dynamic.npz

.PHONY: models test-reference report-reference

models: $(REF_MODELS)

# The seed's architecture, nc=1, stand-in weights from random seed 0 (what `make run` and the benchmarks use).
$(MODELS)/seed-640.onnx: $(REF_SRC)
	$(REF_RUN) --arch seed --nc 1 --names person --imgsz 640 --seed 0 --out $@

# The same model with a symbolic batch axis, for the batched-cameras benchmark (make bench only).
$(MODELS)/seed-640-dynamic.onnx: $(REF_SRC)
	$(REF_RUN) --arch seed --nc 1 --names person --imgsz 640 --seed 0 --dynamic --out $@

# CARAFE as standard ONNX ops instead of the plugin's node, for the runtimes a user could run instead of
# stardetr (scripts/bench-peers): the seed at 640 (make bench-peers only) and the tiny model (its smoke run).
$(MODELS)/seed-640-standard.onnx: $(REF_SRC)
	$(REF_RUN) --arch seed --nc 1 --names person --imgsz 640 --seed 0 --carafe standard --out $@

$(MODELS)/tiny-standard.onnx: $(REF_SRC)
	$(REF_RUN) --arch tiny --nc 2 --names person,car --imgsz 128 --seed 0 --carafe standard --out $@

# The same model and weights exported at 160x160, with a golden input/output pair for the runtime's tests.
$(MODELS)/seed-160.onnx $(MODELS)/seed-160.npz &: $(REF_SRC)
	$(REF_RUN) --arch seed --nc 1 --names person --imgsz 160 --seed 0 --out $(MODELS)/seed-160.onnx --golden $(MODELS)/seed-160.npz

# Small variant (same module types, fewer channels), 2 classes, 128x128: fast tests.
$(MODELS)/tiny.onnx $(MODELS)/tiny.npz &: $(REF_SRC)
	$(REF_RUN) --arch tiny --nc 2 --names person,car --imgsz 128 --seed 0 --out $(MODELS)/tiny.onnx --golden $(MODELS)/tiny.npz

# The tiny model with a symbolic batch axis; its golden input has batch 2.
$(MODELS)/tiny-dynamic.onnx $(MODELS)/tiny-dynamic.npz &: $(REF_SRC)
	$(REF_RUN) --arch tiny --nc 2 --names person,car --imgsz 128 --seed 0 --dynamic --golden-batch 2 \
		--out $(MODELS)/tiny-dynamic.onnx --golden $(MODELS)/tiny-dynamic.npz

test-reference: models plugin
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE STARDETR_MODELS=$(abspath $(MODELS)) \
		$(PY) -m unittest discover -s $(REF_DIR)/tests -t . $(if $(V),-v,)

report-reference:
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(PY) -m model.reference.report --nc 1 --imgsz 640
