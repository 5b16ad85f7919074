# Training path (model/ultralytics, model/train, model/data): tests with the real, pinned ultralytics in
# build/venv (scripts/setup), against bin/stardetr and the CARAFE plugin.
VENV_PY := build/venv/bin/python

.PHONY: test-train test-gpu-smoke bench-train

test-train: $(SETUP_STAMP) $(BIN) plugin
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE YOLO_OFFLINE=true YOLO_AUTOINSTALL=false \
		$(VENV_PY) -m unittest discover -s model/train/tests -t . $(if $(V),-v,)

# scripts/gpu --smoke (scripts/gpu-train on the CPU): one iteration at 128, weight parts, val metrics.
test-gpu-smoke: $(SETUP_STAMP)
	d=$$(mktemp -d /tmp/stardetr-gpu-smoke.XXXXXX) && trap 'rm -rf "$$d"' EXIT && \
		OMP_NUM_THREADS=2 scripts/gpu --smoke --out "$$d"

# Not part of `make test`: one training step of the seed (256, batch 4) and of the demo variant (256, batch 8),
# CARAFE's native kernels vs autograd of its definition side by side, with CARAFE's share from the profiler.
bench-train: $(SETUP_STAMP) plugin
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE YOLO_OFFLINE=true YOLO_AUTOINSTALL=false \
		$(VENV_PY) -m model.train.bench_carafe $(if $(ROUNDS),--rounds $(ROUNDS),)
