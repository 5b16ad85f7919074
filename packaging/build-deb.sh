#!/usr/bin/env bash
# packaging/build-deb.sh ARCH: stage the files of the stardetr .deb for ARCH (amd64|arm64) and
# build it with nfpm. Called by `make deb` (packaging/packaging.mk), which passes:
#   PKG_VERSION  Debian version (packaging/version.sh)
#   BIN          the release binary for ARCH (PIE, stripped)
#   PLUGIN       the CARAFE plugin for ARCH
#   ORT_LIB      the CPU ONNX Runtime library for ARCH
#   CUDA_PLUGIN, TRT_PLUGIN  optional: the CUDA CARAFE plugin and the TensorRT plugin (Jetson)
#   NFPM         the nfpm binary;  DIST  output folder;  STAGE  staging folder
# Depends is computed from what the ELF files need, and the build fails when the binary needs a
# library that Depends does not name (so the package cannot install and then fail to start).
set -euo pipefail
arch=${1:?usage: build-deb.sh amd64|arm64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
die() { echo "build-deb: error: $*" >&2; exit 1; }
: "${PKG_VERSION:?} ${BIN:?} ${PLUGIN:?} ${ORT_LIB:?} ${NFPM:?} ${DIST:?} ${STAGE:?}"
case $arch in
amd64) strip="strip"; machine="X86-64" ;;
arm64) strip=aarch64-linux-gnu-strip; machine="AArch64" ;;
*) die "unsupported architecture '$arch': amd64 or arm64" ;;
esac
command -v "$strip" >/dev/null || die "$strip not found (apt-get install binutils-aarch64-linux-gnu)"
for f in "$BIN" "$PLUGIN" "$ORT_LIB"; do
  [ -f "$f" ] || die "$f is missing"
  readelf -h "$f" | grep -q "Machine: *.*$machine" || die "$f is not an $arch ($machine) ELF file"
done

rm -rf "$STAGE"
mkdir -p "$STAGE/root" "$DIST"
r=$STAGE/root
install -D -m 0755 "$BIN" "$r/usr/bin/stardetr"
install -D -m 0644 "$PLUGIN" "$r/usr/lib/stardetr/libstardetr_carafe.so"
install -D -m 0644 "$ORT_LIB" "$r/usr/lib/stardetr/libonnxruntime.so.1"
if [ -n "${CUDA_PLUGIN:-}" ]; then
  [ -f "$CUDA_PLUGIN" ] || die "$CUDA_PLUGIN is missing: run make cuda-plugin (PKG_CUDA_PLUGIN=1)"
  install -D -m 0644 "$CUDA_PLUGIN" "$r/usr/lib/stardetr/libstardetr_carafe_cuda.so"
fi
# The TensorRT plugin (MMCVCARAFE), where `make cuda-plugin` found TensorRT: model.tensorrt.plugin
# finds it at /usr/lib/stardetr/libstardetr_carafe_trt.so.
if [ -n "${TRT_PLUGIN:-}" ]; then
  [ -f "$TRT_PLUGIN" ] || die "$TRT_PLUGIN is missing: run make cuda-plugin where TensorRT is installed (PKG_CUDA_PLUGIN=1)"
  readelf -h "$TRT_PLUGIN" | grep -q "Machine: *.*$machine" || die "$TRT_PLUGIN is not an $arch ($machine) ELF file"
  install -D -m 0644 "$TRT_PLUGIN" "$r/usr/lib/stardetr/libstardetr_carafe_trt.so"
fi
"$strip" --strip-unneeded --remove-section=.comment "$r/usr/lib/stardetr/"*.so*
"$strip" --remove-section=.comment "$r/usr/bin/stardetr"
install -D -m 0644 "$here/systemd/stardetr.service" "$r/lib/systemd/system/stardetr.service"
{ cat "$here/config-header.yaml"; cat "$root/configs/example.yaml"; } >"$STAGE/config.yaml"
doc=$r/usr/share/doc/stardetr
install -D -m 0644 "$here/../README.md" "$doc/README.md"
install -D -m 0644 "$here/copyright" "$doc/copyright"
install -D -m 0644 "$here/systemd/jetson.conf" "$doc/examples/jetson.conf"
install -D -m 0644 "$root/configs/example.yaml" "$doc/examples/config.yaml"
install -D -m 0644 "$here/lintian-overrides" "$r/usr/share/lintian/overrides/stardetr"
# A changelog is required by policy (changelog.gz: the version has no Debian revision, so the
# package is "native"); dates come from the commit for reproducible packages.
date=$(git -C "$root" log -1 --format=%cD 2>/dev/null || date -R)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'stardetr (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
  "$PKG_VERSION" "$commit" "$PKG_MAINTAINER" "$date" | gzip -9n >"$STAGE/changelog.gz"
install -m 0644 "$STAGE/changelog.gz" "$doc/changelog.gz"
mkdir -p "$r/usr/share/man/man1"
gzip -9n <"$here/stardetr.1" >"$r/usr/share/man/man1/stardetr.1.gz"
chmod 0644 "$r/usr/share/man/man1/stardetr.1.gz"

# Depends from the ELF files' needs: glibc/libstdc++ symbol versions and the OpenCV sonames.
needed=$(for f in "$r/usr/bin/stardetr" "$r/usr/lib/stardetr/"*.so*; do readelf -d "$f"; done |
  sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
glibc=$(for f in "$r/usr/bin/stardetr" "$r/usr/lib/stardetr/"*.so*; do readelf -V --wide "$f"; done |
  grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
depends=("libc6 (>= $glibc)" "libgcc-s1" "libstdc++6" "adduser")
# The package that ships a library: on the build machine's own architecture dpkg knows it (so a
# Jetson's OpenCV 4.8 or CUDA packages are named as they are installed there); for the arm64 cross
# build the Debian 12 names are derived from the soname.
owner() {
  [ "$(dpkg --print-architecture)" = "$arch" ] || return 0
  # No owner (a library from a tarball, e.g. TensorRT under /usr/local): empty, and the caller
  # says so (with pipefail, dpkg-query's failure would otherwise end the script silently).
  { dpkg-query -S "*/$1" 2>/dev/null || true; } | sed -n 's/^\([^:,]*\)\(:[a-z0-9]*\)\{0,1\}: .*/\1/p' | head -1
}
for lib in $needed; do
  case $lib in
  libc.so.6 | libm.so.6 | libdl.so.2 | librt.so.1 | libpthread.so.0 | libresolv.so.2 | ld-linux-*) ;;
  libstdc++.so.6 | libgcc_s.so.1 | libonnxruntime.so.1) ;; # libonnxruntime: bundled; loaded with dlopen
  libopencv_*.so.*)
    m=${lib#libopencv_}; m=${m%%.so.*}; so=${lib##*.so.}
    case $m in core | imgproc | imgcodecs | videoio) ;; *) die "the binary links libopencv_$m: only core, imgproc, imgcodecs, videoio are expected (build with -Wl,--as-needed and the gocv module tags)" ;; esac
    p=$(owner "$lib")
    depends+=("${p:-libopencv-$m$so}")
    ;;
  *)
    p=$(owner "$lib")
    [ -n "$p" ] || die "$lib is needed by a packaged ELF file but no Debian package for it is known (packaging/build-deb.sh)"
    depends+=("$p")
    ;;
  esac
done
mapfile -t depends < <(printf '%s\n' "${depends[@]}" | awk '!seen[$0]++')
printf '%s\n' "${depends[@]}" >"$STAGE/depends"

deps_yaml=$(printf '  - "%s"\n' "${depends[@]}")
cat >"$STAGE/nfpm.yaml" <<YAML
name: stardetr
arch: $arch
platform: linux
version: "$PKG_VERSION"
version_schema: none
section: video
priority: optional
maintainer: "$PKG_MAINTAINER"
vendor: stardetr
homepage: https://github.com/stardetr/stardetr
license: see /usr/share/doc/stardetr/copyright
description: |-
  camera object detector service (RT-DETR, ONNX Runtime, MQTT)
  stardetr captures frames from V4L2, RTSP, HTTP and GStreamer cameras with
  OpenCV, detects objects with an RT-DETR (StarNet + FreqFusion) ONNX model
  through ONNX Runtime and its own CARAFE operator plugin, and publishes the
  detections over MQTT. It runs as a sandboxed systemd service with a watchdog.
  .
  The package bundles the CPU build of ONNX Runtime; on NVIDIA Jetson a GPU
  build can be configured instead. No model is shipped.
depends:
$deps_yaml
suggests:
  - mosquitto
scripts:
  postinstall: $here/scripts/postinst
  preremove: $here/scripts/prerm
  postremove: $here/scripts/postrm
contents:
  - src: $r/
    dst: /
    type: tree
  - src: $STAGE/config.yaml
    dst: /etc/stardetr/config.yaml
    type: config|noreplace
    file_info: {mode: 0644}
YAML
out="$DIST/stardetr_${PKG_VERSION}_${arch}.deb"
rm -f "$out"
"$NFPM" package --config "$STAGE/nfpm.yaml" --packager deb --target "$out" >"$STAGE/nfpm.log" 2>&1 ||
  { cat "$STAGE/nfpm.log" >&2; die "nfpm failed for $arch"; }
echo "build-deb: $out ($(du -h "$out" | cut -f1)); Depends: $(paste -sd, "$STAGE/depends" | sed 's/,/, /g')"
