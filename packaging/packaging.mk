# Release binaries, the arm64 cross build, .deb packages and their checks. Included by the top
# Makefile after its other fragments; uses its GOTAGS, LDFLAGS, VERSION, ORT_DIR, SETUP_STAMP.
#
#   make build-arm64     bin/linux_arm64/stardetr + build/arm64/libstardetr_carafe.so (cross, sysroot)
#   make build GOARCH=arm64   the same, next to the host's bin/stardetr
#   make deb             dist/stardetr_<ver>_{amd64,arm64}.deb (nfpm)
#   make test-packaging  lintian + systemd-analyze verify/security on both .debs (changes nothing)
#   make test-deb        install, check, upgrade, purge the amd64 .deb on THIS machine (root; adds a user)
#   make test-arm64      the arm64 build under qemu-user: NEON kernels, ORT + plugin, version, infer
#
# The arm64 sysroot (Debian 12 arm64 .debs unpacked, ~160 MB download, ~630 MB) is made once by
# scripts/arm64-sysroot under build/sysroot/arm64; later builds reuse it.
.PHONY: build-arm64 release-bins deb deb-amd64 deb-arm64 plugin-amd64 plugin-arm64 cross-setup \
	arm64-sysroot test-packaging test-deb test-arm64 test-arm64-quick

GOHOSTARCH   := $(shell go env GOHOSTARCH)
PKG_VERSION  ?= $(shell packaging/version.sh '$(VERSION)')
PKG_MAINTAINER ?= stardetr developers <stardetr@users.noreply.github.com>
DIST         := dist
NFPM         := build/tools/nfpm-$(NFPM_VERSION)/nfpm
SYSROOT      := build/sysroot/arm64
CROSS_STAMP  := build/.cross-setup
REL_BIN_amd64 := bin/linux_amd64/stardetr
REL_BIN_arm64 := bin/linux_arm64/stardetr
DEB_amd64    = $(DIST)/stardetr_$(PKG_VERSION)_amd64.deb
DEB_arm64    = $(DIST)/stardetr_$(PKG_VERSION)_arm64.deb
ARM64_TESTS  := build/arm64/test

# Release binaries: PIE, full RELRO, stripped, fortified cgo, and --as-needed so that only the
# four OpenCV libraries gocv uses with GOTAGS are linked (the packages depend on exactly those).
REL_GOFLAGS  := -tags $(GOTAGS) -trimpath -buildmode=pie \
	-ldflags "-s -w $(LDFLAGS) -extldflags '-Wl,-z,relro,-z,now -Wl,--as-needed'"
REL_CGOFLAGS := -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong
# On an x86-64 host the arm64 build is a cross build: Debian's aarch64 gcc against the sysroot,
# pkg-config reading only the sysroot. On an arm64 host (a Jetson, an ARM board) it is native,
# against the system's OpenCV, and `make deb` builds the arm64 package only.
ifeq ($(GOHOSTARCH),arm64)
CROSS_ENV_arm64 := CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=gcc CXX=g++
ARM64_DEPS   :=
DEB_ARCHES   := arm64
else
CROSS_ENV_arm64 := CGO_ENABLED=1 GOOS=linux GOARCH=arm64 \
	CC="aarch64-linux-gnu-gcc --sysroot=$(abspath $(SYSROOT))" \
	CXX="aarch64-linux-gnu-g++ --sysroot=$(abspath $(SYSROOT))" \
	PKG_CONFIG_LIBDIR=$(abspath $(SYSROOT))/usr/lib/aarch64-linux-gnu/pkgconfig:$(abspath $(SYSROOT))/usr/share/pkgconfig \
	PKG_CONFIG_SYSROOT_DIR=$(abspath $(SYSROOT))
ARM64_DEPS   := arm64-sysroot
DEB_ARCHES   := amd64 arm64
endif
CROSS_ENV_amd64 := CGO_ENABLED=1 GOOS=linux GOARCH=amd64 CC=gcc CXX=g++
# Set PKG_CUDA_PLUGIN=1 to also build (`make cuda-plugin`, on the machine's own architecture)
# and package build/<arch>/libstardetr_carafe_cuda.so and, where TensorRT's headers and
# libnvinfer are found (TENSORRT_INCLUDE, TENSORRT_LIB: model/carafe/carafe.mk), the TensorRT
# plugin build/<arch>/libstardetr_carafe_trt.so; the package then depends on the CUDA runtime
# and the libnvinfer they link.
PKG_CUDA_PLUGIN ?=
PKG_TRT_PLUGIN = $(if $(PKG_CUDA_PLUGIN),$(if $(and $(TENSORRT_INCLUDE),$(TENSORRT_LIB)),build/$(1)/libstardetr_carafe_trt.so))

$(CROSS_STAMP): scripts/cross-setup
	scripts/cross-setup
	@mkdir -p $(dir $@) && touch $@

cross-setup: $(CROSS_STAMP)

arm64-sysroot: $(CROSS_STAMP)
	@scripts/arm64-sysroot $(SYSROOT)

# go build decides what is stale (its cache makes a no-op build take ~2 s), hence FORCE.
$(REL_BIN_amd64): $(SETUP_STAMP) FORCE
	@mkdir -p $(dir $@)
	$(CROSS_ENV_amd64) CGO_CFLAGS="$(REL_CGOFLAGS)" CGO_CXXFLAGS="$(REL_CGOFLAGS)" \
		go build $(REL_GOFLAGS) -o $@ ./cmd/stardetr

$(REL_BIN_arm64): $(SETUP_STAMP) $(ARM64_DEPS) FORCE
	@mkdir -p $(dir $@)
	$(CROSS_ENV_arm64) CGO_CFLAGS="$(REL_CGOFLAGS)" CGO_CXXFLAGS="$(REL_CGOFLAGS)" \
		go build $(REL_GOFLAGS) -o $@ ./cmd/stardetr

plugin-amd64 plugin-arm64: plugin-%: $(SETUP_STAMP) $(CROSS_STAMP)
	@$(MAKE) --no-print-directory plugin GOARCH=$*

build-arm64: $(REL_BIN_arm64) plugin-arm64

release-bins: $(REL_BIN_amd64) $(REL_BIN_arm64)

# `make build GOARCH=arm64`: the top Makefile's bin/stardetr stays a host binary (its recipe
# would otherwise cross-compile without cgo); the arm64 build goes to bin/linux_arm64.
ifneq ($(GOARCH),$(GOHOSTARCH))
build: build-$(GOARCH)
$(BIN): override export GOARCH := $(GOHOSTARCH)
endif

$(NFPM):
	@mkdir -p $(dir $@)
	GOBIN=$(abspath $(dir $@)) go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

deb: $(DEB_ARCHES:%=deb-%)

deb-amd64 deb-arm64: deb-%: $(NFPM) plugin-% FORCE
	@$(MAKE) --no-print-directory $(REL_BIN_$*)
	$(if $(and $(PKG_CUDA_PLUGIN),$(filter $*,$(GOHOSTARCH))),@$(MAKE) --no-print-directory cuda-plugin)
	PKG_VERSION='$(PKG_VERSION)' PKG_MAINTAINER='$(PKG_MAINTAINER)' BIN=$(REL_BIN_$*) \
	PLUGIN=build/$*/libstardetr_carafe.so ORT_LIB=$(ORT_DIR)/$(if $(filter arm64,$*),arm64,x64)/libonnxruntime.so.1 \
	NFPM=$(NFPM) DIST=$(DIST) STAGE=build/pkg/$* \
	CUDA_PLUGIN=$(if $(PKG_CUDA_PLUGIN),build/$*/libstardetr_carafe_cuda.so) TRT_PLUGIN=$(call PKG_TRT_PLUGIN,$*) \
	packaging/build-deb.sh $*

# Static checks of both packages: safe anywhere (nothing is installed).
test-packaging: deb
	packaging/test-static.sh $(DEB_amd64) $(DEB_arm64)

# Installs, upgrades and purges the amd64 package on this machine: root, a throw-away machine.
test-deb: deb models
	packaging/test-install.sh $(DEB_amd64) $(MODELS)/tiny.onnx $(DEB_arm64)

# qemu-user runs of the arm64 build (scripts/arm64-test). The quick set (~30 s of emulation once
# built) skips the model package's Go tests (~4 min under qemu).
ARM64_TEST_ENV = SYSROOT=$(SYSROOT) ORT_DIR=$(ORT_DIR) ARM_BIN=$(REL_BIN_arm64) HOST_BIN=$(BIN) MODELS=$(MODELS)
ARM64_TEST_DEPS = build-arm64 $(BIN) plugin-amd64 models $(ARM64_TESTS)/carafe_gotest.test $(ARM64_TESTS)/camera.test
test-arm64-quick: $(ARM64_TEST_DEPS)
	@$(MAKE) --no-print-directory GOARCH=arm64 build/arm64/carafe/test_carafe
	$(ARM64_TEST_ENV) scripts/arm64-test --quick

test-arm64: $(ARM64_TEST_DEPS) $(ARM64_TESTS)/model.test
	@$(MAKE) --no-print-directory GOARCH=arm64 build/arm64/carafe/test_carafe
	$(ARM64_TEST_ENV) scripts/arm64-test

FORCE:

# arm64 Go test binaries, run under qemu by scripts/arm64-test.
ARM64_TEST_PKG_carafe_gotest := model/carafe/gotest
ARM64_TEST_PKG_model := model
ARM64_TEST_PKG_camera := camera
$(ARM64_TESTS)/carafe_gotest.test $(ARM64_TESTS)/model.test $(ARM64_TESTS)/camera.test: $(ARM64_TESTS)/%.test: $(SETUP_STAMP) $(ARM64_DEPS) FORCE
	@mkdir -p $(dir $@)
	$(CROSS_ENV_arm64) go test -c -tags $(GOTAGS) -o $@ ./$(ARM64_TEST_PKG_$*)

# `make test` also runs the quick emulated arm64 checks (~15 s once built; a fresh machine first
# downloads ~160 MB of arm64 .debs and cross-compiles, ~5 min) and the static package checks.
test: test-arm64-quick test-packaging
