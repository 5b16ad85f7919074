#!/bin/sh
# `make trt-check`: the MMCVCARAFE TensorRT plugin compiled and checked against TensorRT headers,
# without TensorRT's libraries (which cannot be had here). For each header directory given:
#   1. a stand-in libnvinfer.so.<major> (trt_check_stub.cpp: getPluginRegistry and getLogger that
#      record) compiled against those headers;
#   2. the adapter (carafe_trt.cpp) compiled by nvcc against them with warnings as errors, and
#      linked as the real plugin is (the CUDA kernel, the core, the C checks, -lnvinfer, no
#      undefined symbols);
#   3. the library's symbols: it exports only stardetr_carafe_trt_info, takes exactly
#      getLogger and getPluginRegistry from libnvinfer, and needs libnvinfer.so.<major> and the
#      shared CUDA runtime;
#   4. trt_check.cpp loads it with dlopen, as ONNX Runtime, trtexec and DeepStream do, and checks
#      the registered creator (MMCVCARAFE, version 1, namespace "") and the plugin through
#      TensorRT's interfaces of that version.
# Usage: trt-check.sh OUTDIR "OBJECTS" INCLUDE_DIR...  (env: NVCC, CARAFE_NVCC, CXX, CUDA_LDIR)
set -eu
out=$1 objs=$2
shift 2
dir=$(cd "$(dirname "$0")" && pwd)
: "${NVCC:?} ${CARAFE_NVCC:?} ${CXX:?}"
command -v "$NVCC" >/dev/null 2>&1 || { echo "trt-check: $NVCC not found: run make cuda-check (installs Debian's nvcc) or set NVCC" >&2; exit 1; }
summary="" failed=""
for inc in "$@"; do
	if [ ! -f "$inc/NvInfer.h" ] || [ ! -f "$inc/NvInferVersion.h" ]; then
		echo "trt-check: $inc has no NvInfer.h/NvInferVersion.h: set TENSORRT_INCLUDE to TensorRT's include directory" >&2
		exit 1
	fi
	ver=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' |
		"$CXX" -E -P -isystem "$inc" -x c++ - | tail -1 | tr -d ' ')
	major=${ver%%.*}
	case $major in 8 | 9 | 1[0-9]) ;; *) echo "trt-check: cannot read the TensorRT version from $inc/NvInferVersion.h (got '$ver')" >&2; exit 1 ;; esac
	d=$out/trt-$ver
	rm -rf "$d"
	mkdir -p "$d/stub"
	echo "== trt-check: TensorRT $ver headers in $inc"
	"$CXX" -std=c++14 -O1 -fPIC -Wall -Wextra -Werror -isystem "$inc" -shared -Wl,-soname,libnvinfer.so.$major \
		-o "$d/stub/libnvinfer.so.$major" "$dir/trt_check_stub.cpp"
	ln -s "libnvinfer.so.$major" "$d/stub/libnvinfer.so"
	# shellcheck disable=SC2086
	$CARAFE_NVCC -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror -I"$dir" -isystem "$inc" \
		-c "$dir/carafe_trt.cpp" -o "$d/carafe_trt.o"
	lib=$d/libstardetr_carafe_trt.so
	# shellcheck disable=SC2086
	$CARAFE_NVCC -shared -Xlinker -soname,libstardetr_carafe_trt.so -Xlinker --no-undefined \
		-Xlinker --version-script="$dir/carafe_trt.map" -o "$lib" "$d/carafe_trt.o" \
		$objs ${CUDA_LDIR:-} -L"$d/stub" -lnvinfer -lm

	exports=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sort | tr '\n' ' ')
	[ "$exports" = "stardetr_carafe_trt_info " ] ||
		{ echo "trt-check: $lib exports '$exports'; want only stardetr_carafe_trt_info (everything else hidden)" >&2; exit 1; }
	from_trt=$(nm -D --undefined-only "$lib" | awk '{ print $2 }' | sort >"$d/undef"
		nm -D --defined-only "$d/stub/libnvinfer.so.$major" | awk '{ print $3 }' | sort | comm -12 "$d/undef" - | tr '\n' ' ')
	[ "$from_trt" = "getLogger getPluginRegistry " ] ||
		{ echo "trt-check: $lib takes '$from_trt' from libnvinfer; want getLogger getPluginRegistry" >&2; exit 1; }
	needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
	case " $needed" in *" libnvinfer.so.$major "*) ;; *) echo "trt-check: $lib needs '$needed': no libnvinfer.so.$major" >&2; exit 1 ;; esac
	case " $needed" in *" libcudart.so."*) ;; *) echo "trt-check: $lib needs '$needed': no shared libcudart" >&2; exit 1 ;; esac
	! nm "$lib" | grep -q ' cudart::' || { echo "trt-check: $lib contains a static CUDA runtime" >&2; exit 1; }

	"$CXX" -std=c++14 -O1 -Wall -Wextra -Werror -I"$dir" -isystem "$inc" -o "$d/trt_check" "$dir/trt_check.cpp" \
		-L"$d/stub" -lnvinfer -Wl,-rpath,"$(cd "$d/stub" && pwd)" -ldl
	ok=1
	"$d/trt_check" "$lib" >"$d/trt_check.txt" 2>&1 || ok=0
	cat "$d/trt_check.txt"
	summary="$summary TensorRT $ver: $(tail -1 "$d/trt_check.txt");"
	[ $ok = 1 ] || failed="$failed $ver"
	[ $ok = 0 ] || echo "trt-check: TensorRT $ver: adapter compiled by nvcc without warnings; $lib exports only stardetr_carafe_trt_info, takes getLogger and getPluginRegistry from libnvinfer.so.$major, needs: $needed"
done
echo "trt-check: done:$summary (compile and registration checks against a stub libnvinfer; building and running an engine needs TensorRT and a GPU)"
[ -z "$failed" ] || { echo "trt-check: FAILED for TensorRT$failed" >&2; exit 1; }
