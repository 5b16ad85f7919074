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
.PHONY: plugin test-carafe test-carafe-arm64 bench-carafe cuda-check cuda-plugin cuda-test-build

CARAFE_DIR     := model/carafe
CARAFE_OBJ     := $(BUILD)/carafe
# Expanded when a recipe first needs it (then kept): on a fresh machine the module is downloaded by
# scripts/setup, which runs after this file is parsed.
CARAFE_ORT_INC = $(eval CARAFE_ORT_INC := $$(shell go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go 2>/dev/null))$(CARAFE_ORT_INC)
# Cross-compiling for arm64 from x86-64 uses Debian's gcc-aarch64-linux-gnu.
CARAFE_HOSTARCH := $(shell go env GOHOSTARCH)
CARAFE_CC      ?= $(if $(filter-out $(CARAFE_HOSTARCH),$(GOARCH)),$(if $(filter arm64,$(GOARCH)),aarch64-linux-gnu-gcc,gcc),gcc)
CARAFE_CFLAGS   = -O3 -std=gnu11 -fPIC -fvisibility=hidden -Wall -Wextra -D_FORTIFY_SOURCE=2 -fstack-protector-strong -I$(CARAFE_DIR) -I$(CARAFE_ORT_INC)
CARAFE_HDRS    := $(wildcard $(CARAFE_DIR)/*.h)
CARAFE_SRCS    := carafe_core carafe_ref carafe_generic carafe_ort \
                  $(if $(filter amd64,$(GOARCH)),carafe_avx2) $(if $(filter arm64,$(GOARCH)),carafe_neon)
CARAFE_OBJS    := $(CARAFE_SRCS:%=$(CARAFE_OBJ)/%.o)
# Only the AVX2 translation unit may use AVX2/FMA instructions: carafe_core.c checks the CPU first.
CARAFE_FLAGS_carafe_avx2 := -mavx2 -mfma

plugin: $(PLUGIN)

$(CARAFE_OBJ)/%.o: $(CARAFE_DIR)/%.c $(CARAFE_HDRS) | $(SETUP_STAMP)
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
CARAFE_CUDA_TEST := $(CARAFE_CUDA_OBJ)/test_carafe_cuda
# Machine code (SASS) for Jetson Orin (sm_87) and H100/H200 (sm_90), plus PTX that the driver
# compiles at load time on any other GPU: compute_70 PTX runs on every Volta-or-newer GPU
# (sm_80/86/89 included), compute_90 PTX on any GPU newer than sm_90.
CARAFE_CUDA_ARCH ?= -gencode arch=compute_87,code=sm_87 -gencode arch=compute_90,code=[sm_90,compute_90] \
                    -gencode arch=compute_70,code=compute_70
# On a Jetson: make cuda-plugin NVCC=/usr/local/cuda/bin/nvcc CARAFE_CUDA_ARCH="-arch sm_87"
NVCC             ?= nvcc
CUDA_HOME        ?= /usr/local/cuda
CARAFE_CUDA_LDIR := $(if $(wildcard $(CUDA_HOME)/lib64),-L$(CUDA_HOME)/lib64)
# The CUDA runtime is linked shared (libcudart.so), never nvcc's default static copy: the kernel
# then shares one runtime, and so one error state, with ONNX Runtime's CUDA provider.
CARAFE_NVCC      := $(NVCC) -O3 -std=c++14 $(CARAFE_CUDA_ARCH) -cudart shared

cuda-plugin: $(CARAFE_CUDA_LIB)

$(CARAFE_CUDA_OBJ)/carafe_cuda.o: $(CARAFE_DIR)/carafe_cuda.cu $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_NVCC) -Xcompiler -fPIC,-fvisibility=hidden -I$(CARAFE_DIR) -c $< -o $@

$(CARAFE_CUDA_OBJ)/carafe_ort.o: $(CARAFE_DIR)/carafe_ort.c $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_CC) $(CARAFE_CFLAGS) -DSTARDETR_CARAFE_CUDA -c $< -o $@

$(CARAFE_CUDA_LIB): $(filter-out $(CARAFE_OBJ)/carafe_ort.o,$(CARAFE_OBJS)) $(CARAFE_CUDA_OBJ)/carafe_ort.o $(CARAFE_CUDA_OBJ)/carafe_cuda.o
	$(CARAFE_NVCC) -shared -Xlinker -soname,libstardetr_carafe_cuda.so -o $@ $^ $(CARAFE_CUDA_LDIR) -lm

# The GPU test (scripts/gpu check) links the kernel with the C reference and dimension checks
# directly; these objects need no ONNX Runtime header (and so no Go), as on a bare GPU machine.
CARAFE_CUDA_CPU := $(patsubst %,$(CARAFE_CUDA_OBJ)/cpu/%.o,$(filter-out carafe_ort,$(CARAFE_SRCS)))

$(CARAFE_CUDA_OBJ)/cpu/%.o: $(CARAFE_DIR)/%.c $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_CC) -O2 -std=gnu11 -Wall -Wextra -I$(CARAFE_DIR) $(CARAFE_FLAGS_$*) -c $< -o $@

$(CARAFE_CUDA_TEST): $(CARAFE_DIR)/test_carafe_cuda.cu $(CARAFE_CUDA_OBJ)/carafe_cuda.o $(CARAFE_CUDA_CPU) $(CARAFE_HDRS)
	$(CARAFE_NVCC) -I$(CARAFE_DIR) -o $@ $< $(CARAFE_CUDA_OBJ)/carafe_cuda.o $(CARAFE_CUDA_CPU) $(CARAFE_CUDA_LDIR) \
		$(if $(wildcard $(CUDA_HOME)/lib64),-Xlinker -rpath=$(CUDA_HOME)/lib64) -lm

cuda-test-build: $(CARAFE_CUDA_TEST)

# Compile check (no GPU here): the plugin and the GPU test build, the plugin exports
# RegisterCustomOps, carries SASS for sm_87 and sm_90 and PTX, and needs the shared CUDA runtime.
cuda-check:
	$(CARAFE_DIR)/cuda-toolkit.sh
	$(MAKE) --no-print-directory cuda-plugin cuda-test-build
	@set -e; lib=$(CARAFE_CUDA_LIB); \
	nm -D --defined-only $$lib | grep -q ' RegisterCustomOps$$' || { echo "cuda-check: $$lib does not export RegisterCustomOps"; exit 1; }; \
	for f in $$lib $(CARAFE_CUDA_TEST); do \
		elf=$$(cuobjdump --list-elf $$f); ptx=$$(cuobjdump --list-ptx $$f); \
		for a in sm_87 sm_90; do echo "$$elf" | grep -q "$$a" || { echo "cuda-check: $$f has no $$a code"; exit 1; }; done; \
		for a in sm_70 sm_90; do echo "$$ptx" | grep -q "$$a" || { echo "cuda-check: $$f has no $$a PTX"; exit 1; }; done; \
		readelf -d $$f | grep -q 'NEEDED.*libcudart\.so' || { echo "cuda-check: $$f does not link libcudart.so"; exit 1; }; \
		! nm $$f | grep -q ' cudart::' || { echo "cuda-check: $$f contains a static CUDA runtime"; exit 1; }; \
	done; \
	echo "cuda-check: $$lib and $(CARAFE_CUDA_TEST) built: SASS sm_87 + sm_90, PTX compute_70 + compute_90, shared libcudart (compile check only: no GPU here)"

# ---- TensorRT plugin MMCVCARAFE, its TensorRT-free core, the CUDA kernel's host emulation ----
# (carafe_trt.cpp, carafe_trt_core.{h,cc}, carafe_cuda_body.h, carafe_cuda_emu.h; README, "The
# CARAFE plugin" and "NVIDIA Jetson".)
#   make test-carafe-host   (part of `make test`; g++ only) the core's tests and the CUDA kernel
#                           executed on the CPU against the reference
#   make trt-check          compile check of the adapter against TENSORRT_INCLUDE (one directory
#                           or several), linked as the real plugin and loaded against a stub
#                           libnvinfer (model/carafe/trt-check.sh); needs nvcc (make cuda-check)
#   make cuda-plugin        also builds $(CARAFE_TRT_LIB) where TensorRT's headers and
#                           libnvinfer are found, else says which is missing
.PHONY: test-carafe-host trt-check carafe-trt-plugin

CARAFE_CXX      ?= $(if $(filter-out $(CARAFE_HOSTARCH),$(GOARCH)),$(if $(filter arm64,$(GOARCH)),aarch64-linux-gnu-g++,g++),g++)
CARAFE_CXXFLAGS := -O2 -std=c++14 -fPIC -fvisibility=hidden -Wall -Wextra -I$(CARAFE_DIR)
CARAFE_TRT_OBJ  := $(BUILD)/carafe-trt
CARAFE_TRT_LIB  := $(BUILD)/libstardetr_carafe_trt.so
CARAFE_TRIPLE   := $(if $(filter arm64,$(GOARCH)),aarch64-linux-gnu,x86_64-linux-gnu)
# Where JetPack (and NVIDIA's .debs) put TensorRT; override with TENSORRT_INCLUDE / TENSORRT_LIB.
TENSORRT_INCLUDE ?= $(firstword $(foreach d,/usr/include/$(CARAFE_TRIPLE) /usr/include /usr/local/tensorrt/include,$(if $(wildcard $(d)/NvInfer.h),$(d))))
TENSORRT_LIB     ?= $(firstword $(foreach d,/usr/lib/$(CARAFE_TRIPLE) /usr/local/tensorrt/lib /usr/lib,$(if $(wildcard $(d)/libnvinfer.so),$(d))))

$(CARAFE_TRT_OBJ)/carafe_trt_core.o: $(CARAFE_DIR)/carafe_trt_core.cc $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_CXX) $(CARAFE_CXXFLAGS) -c $< -o $@

# The host tests link the C reference and dimension checks directly (no ONNX Runtime header, so
# no Go: scripts/gpu check builds them on a bare GPU machine too).
$(CARAFE_TRT_OBJ)/test_carafe_trt_core: $(CARAFE_DIR)/test_carafe_trt_core.cc $(CARAFE_TRT_OBJ)/carafe_trt_core.o $(CARAFE_CUDA_CPU) $(CARAFE_HDRS)
	$(CARAFE_CXX) -O2 -std=c++14 -Wall -Wextra -I$(CARAFE_DIR) -o $@ $< $(CARAFE_TRT_OBJ)/carafe_trt_core.o $(CARAFE_CUDA_CPU) -lm

$(CARAFE_TRT_OBJ)/test_carafe_emu: $(CARAFE_DIR)/test_carafe_emu.cc $(CARAFE_CUDA_CPU) $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_CXX) -O2 -std=c++14 -Wall -Wextra -I$(CARAFE_DIR) -o $@ $< $(CARAFE_CUDA_CPU) -lm

# After `make setup` (g++ comes with build-essential); scripts/gpu builds the binaries alone.
test-carafe-host: $(SETUP_STAMP) $(CARAFE_TRT_OBJ)/test_carafe_trt_core $(CARAFE_TRT_OBJ)/test_carafe_emu
	$(CARAFE_TRT_OBJ)/test_carafe_trt_core
	$(CARAFE_TRT_OBJ)/test_carafe_emu

test: test-carafe-host

# The C objects of the plugin libraries (position-independent), less the ONNX Runtime glue.
CARAFE_TRT_C := $(filter-out $(CARAFE_OBJ)/carafe_ort.o,$(CARAFE_OBJS))

trt-check: $(CARAFE_CUDA_OBJ)/carafe_cuda.o $(CARAFE_TRT_OBJ)/carafe_trt_core.o $(CARAFE_TRT_C)
	@test -n "$(TENSORRT_INCLUDE)" || { echo "trt-check: TensorRT headers (NvInfer.h) not found in /usr/include/$(CARAFE_TRIPLE), /usr/include or /usr/local/tensorrt/include: set TENSORRT_INCLUDE to their directory (several, space-separated, are checked one by one)"; exit 1; }
	NVCC="$(NVCC)" CXX="$(CARAFE_CXX)" CARAFE_NVCC="$(CARAFE_NVCC)" CUDA_LDIR="$(CARAFE_CUDA_LDIR)" \
		$(CARAFE_DIR)/trt-check.sh $(CARAFE_TRT_OBJ)/check "$(CARAFE_CUDA_OBJ)/carafe_cuda.o $(CARAFE_TRT_OBJ)/carafe_trt_core.o $(CARAFE_TRT_C)" $(TENSORRT_INCLUDE)

# The real plugin: the adapter compiled against TENSORRT_INCLUDE, linked with libnvinfer.
$(CARAFE_TRT_OBJ)/carafe_trt.o: $(CARAFE_DIR)/carafe_trt.cpp $(CARAFE_HDRS)
	@mkdir -p $(dir $@)
	$(CARAFE_NVCC) -Xcompiler -fPIC,-fvisibility=hidden -I$(CARAFE_DIR) -isystem $(firstword $(TENSORRT_INCLUDE)) -c $< -o $@

$(CARAFE_TRT_LIB): $(CARAFE_DIR)/carafe_trt.map $(CARAFE_TRT_OBJ)/carafe_trt.o $(CARAFE_TRT_OBJ)/carafe_trt_core.o $(CARAFE_CUDA_OBJ)/carafe_cuda.o $(CARAFE_TRT_C)
	$(CARAFE_NVCC) -shared -Xlinker -soname,libstardetr_carafe_trt.so -Xlinker --no-undefined \
		-Xlinker --version-script=$(CARAFE_DIR)/carafe_trt.map -o $@ $(filter %.o,$^) $(CARAFE_CUDA_LDIR) -L$(TENSORRT_LIB) -lnvinfer -lm

carafe-trt-plugin:
	@if [ -z "$(TENSORRT_INCLUDE)" ]; then \
		echo "cuda-plugin: TensorRT plugin not built: TensorRT headers (NvInfer.h) not found in /usr/include/$(CARAFE_TRIPLE), /usr/include or /usr/local/tensorrt/include (JetPack: apt install libnvinfer-dev; or set TENSORRT_INCLUDE)"; \
	elif [ -z "$(TENSORRT_LIB)" ]; then \
		echo "cuda-plugin: TensorRT plugin not built: libnvinfer.so not found in /usr/lib/$(CARAFE_TRIPLE), /usr/local/tensorrt/lib or /usr/lib (JetPack: apt install libnvinfer-dev; or set TENSORRT_LIB)"; \
	else \
		$(MAKE) --no-print-directory $(CARAFE_TRT_LIB) && echo "cuda-plugin: built $(CARAFE_TRT_LIB) against TensorRT in $(TENSORRT_INCLUDE), $(TENSORRT_LIB)"; \
	fi

cuda-plugin: carafe-trt-plugin
