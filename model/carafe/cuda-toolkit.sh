#!/bin/sh
# Installs Debian's CUDA toolkit (nvcc 11.8, package nvidia-cuda-toolkit from the non-free
# component) for `make cuda-check`. Only that target calls this: `make test` never needs CUDA.
set -eu
if command -v nvcc >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
	echo "cuda-toolkit.sh: nvcc missing; run as root (it edits apt sources and installs nvidia-cuda-toolkit)" >&2
	exit 1
fi
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ] && ! grep -q '^Components:.*non-free' "$src"; then
	# nvidia-cuda-toolkit lives in non-free and pulls from contrib; add both to every stanza.
	sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "$src"
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nvidia-cuda-toolkit
