# CARAFE custom-op plugin (mmcv::MMCVCARAFE) for ONNX Runtime: see model/carafe/carafe_ort.c.
#
# Two libraries are built from the same sources:
#   $(PLUGIN) = build/$(GOARCH)/libstardetr_carafe.so   `make plugin`: the CPU op only (reference,
#       portable vector variant, AVX2+FMA chosen at run time on x86-64, NEON on arm64). It links
#       only libc/libm/libpthread and never depends on CUDA.
#   $(BUILD)/libstardetr_carafe_cuda.so                 `make cuda-plugin` / `make cuda-check`: the
#       same sources compiled with -DSTARDETR_CARAFE_CUDA plus carafe_cuda.cu; it registers the CPU op
#       and CUDA-provider ops (float32, float16) in the same mmcv domain. Needs nvcc and libcudart; load
#       it instead of the CPU library on a GPU device. Here it is compile-checked only (no GPU).
# The ORT C header is the one onnxruntime_go ships (go.mod pins the version).
.PHONY: plugin test-carafe test-carafe-arm64 bench-carafe cuda-check cuda-plugin

CARAFE_DIR     := model/carafe
CARAFE_OBJ     := $(BUILD)/carafe
CARAFE_ORT_INC := $(shell go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go 2>/dev/null)
# Cross-compiling for arm64 from x86-64 uses Debian's gcc-aarch64-linux-gnu.
CARAFE_HOSTARCH := $(shell go env GOHOSTARCH)
CARAFE_CC      ?= $(if $(filter-out $(CARAFE_HOSTARCH),$(GOARCH)),$(if $(filter arm64,$(GOARCH)),aarch64-linux-gnu-gcc,gcc),gcc)
CARAFE_CFLAGS  := -O3 -std=gnu11 -fPIC -fvisibility=hidden -Wall -Wextra -D_FORTIFY_SOURCE=2 -fstack-protector-strong -I$(CARAFE_DIR) -I$(CARAFE_ORT_INC)
CARAFE_HDRS    := $(wildcard $(CARAFE_DIR)/*.h)
CARAFE_SRCS    := carafe_core carafe_ref carafe_generic carafe_ort \
                  $(if $(filter amd64,$(GOARCH)),carafe_avx2) $(if $(filter arm64,$(GOARCH)),carafe_neon)
CARAFE_OBJS    := $(CARAFE_SRCS:%=$(CARAFE_OBJ)/%.o)
# Only the AVX2 translation unit may use AVX2/FMA instructions: carafe_core.c checks the CPU first.
CARAFE_FLAGS_carafe_avx2 := -mavx2 -mfma

plugin: $(PLUGIN)

$(CARAFE_OBJ)/%.o: $(CARAFE_DIR)/%.c $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	@test -f "$(CARAFE_ORT_INC)/onnxruntime_c_api.h" || { echo "carafe: onnxruntime_c_api.h not found (go list -m github.com/yalue/onnxruntime_go gave '$(CARAFE_ORT_INC)'): run 'go mod download'"; exit 1; }
	$(CARAFE_CC) $(CARAFE_CFLAGS) $(CARAFE_FLAGS_$*) -c $< -o $@

$(PLUGIN): $(CARAFE_OBJS)
	$(CARAFE_CC) -shared -Wl,-soname,libstardetr_carafe.so -Wl,--no-undefined -Wl,-z,relro,-z,now -o $@ $^ -lm -lpthread

# The C test links the plugin and calls its exported entry points.
$(CARAFE_OBJ)/test_carafe: $(CARAFE_DIR)/test_carafe.c $(CARAFE_HDRS) $(PLUGIN)
	$(CARAFE_CC) -O2 -Wall -Wextra -I$(CARAFE_DIR) -o $@ $< $(PLUGIN) -Wl,-rpath,$(abspath $(BUILD)) -lm

# C variants vs the reference, then the reference vs numpy (ctypes). The ONNX Runtime path
# (Go, onnxruntime_go) runs in test-go: model/carafe/gotest.
test-carafe: $(CARAFE_OBJ)/test_carafe
	$(CARAFE_OBJ)/test_carafe
	$(PY) $(CARAFE_DIR)/carafe_numpy_test.py $(abspath $(PLUGIN))

# The arm64 build (NEON variant) cross-compiled and run under qemu: needs gcc-aarch64-linux-gnu
# and qemu-user-static (not installed by scripts/setup, so not part of `make test`).
test-carafe-arm64:
	$(MAKE) --no-print-directory GOARCH=arm64 build/arm64/carafe/test_carafe
	qemu-aarch64-static -L /usr/aarch64-linux-gnu build/arm64/carafe/test_carafe

$(CARAFE_OBJ)/bench_carafe: $(CARAFE_DIR)/bench_carafe.c $(CARAFE_HDRS) $(PLUGIN) $(SETUP_STAMP)
	$(CARAFE_CC) -O2 -Wall -Wextra -I$(CARAFE_DIR) -I$(CARAFE_ORT_INC) -o $@ $< $(PLUGIN) $(ORT_LIB) \
		-Wl,-rpath,$(abspath $(BUILD)):$(abspath $(dir $(ORT_LIB))) -lm -lpthread

# Per FreqFusion call shape: reference, optimised kernel (direct, and in ONNX Runtime with 1 and 2
# threads) and ONNX Runtime running the standard-op decomposition; ratios and GB/s vs memory bandwidth.
bench-carafe: $(CARAFE_OBJ)/bench_carafe
	@mkdir -p $(CARAFE_OBJ)/graphs
	$(PY) $(CARAFE_DIR)/carafe_graphs.py bench $(CARAFE_OBJ)/graphs
	$(CARAFE_OBJ)/bench_carafe $(CARAFE_OBJ)/graphs $(abspath $(PLUGIN))

# CUDA: nvcc (Debian's nvidia-cuda-toolkit, 11.8) is installed by cuda-check only, never by `make test`.
CARAFE_CUDA_LIB  := $(BUILD)/libstardetr_carafe_cuda.so
CARAFE_CUDA_OBJ  := $(BUILD)/carafe-cuda
CARAFE_CUDA_ARCH ?= -gencode arch=compute_87,code=sm_87 -gencode arch=compute_90,code=sm_90
# On a Jetson: make cuda-plugin NVCC=/usr/local/cuda/bin/nvcc CARAFE_CUDA_ARCH="-arch sm_87"
NVCC             ?= nvcc
CUDA_HOME        ?= /usr/local/cuda
CARAFE_CUDA_LDIR := $(if $(wildcard $(CUDA_HOME)/lib64),-L$(CUDA_HOME)/lib64)

cuda-plugin: $(CARAFE_CUDA_LIB)

$(CARAFE_CUDA_OBJ)/carafe_cuda.o: $(CARAFE_DIR)/carafe_cuda.cu $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++14 $(CARAFE_CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden -I$(CARAFE_DIR) -I$(CARAFE_ORT_INC) -c $< -o $@

$(CARAFE_CUDA_OBJ)/carafe_ort.o: $(CARAFE_DIR)/carafe_ort.c $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_CC) $(CARAFE_CFLAGS) -DSTARDETR_CARAFE_CUDA -c $< -o $@

$(CARAFE_CUDA_LIB): $(filter-out $(CARAFE_OBJ)/carafe_ort.o,$(CARAFE_OBJS)) $(CARAFE_CUDA_OBJ)/carafe_ort.o $(CARAFE_CUDA_OBJ)/carafe_cuda.o
	$(NVCC) -shared $(CARAFE_CUDA_ARCH) -Xlinker -soname,libstardetr_carafe_cuda.so -o $@ $^ $(CARAFE_CUDA_LDIR) -lcudart -lm

cuda-check:
	$(CARAFE_DIR)/cuda-toolkit.sh
	$(MAKE) --no-print-directory cuda-plugin
	@nm -D --defined-only $(CARAFE_CUDA_LIB) | grep -q ' RegisterCustomOps$$' && \
		cuobjdump --list-elf $(CARAFE_CUDA_LIB) | grep -E 'sm_(87|90)' && \
		echo "cuda-check: $(CARAFE_CUDA_LIB) built for sm_87 and sm_90 (compile check only: no GPU here)"
