#!/bin/sh
# packaging/version.sh DESCRIBE: the Debian package version for `git describe --tags --always
# --dirty` output (the Makefile's VERSION), so that the version is defined once, by git:
#   v1.2.0                 -> 1.2.0
#   v1.2.0-5-gabc1234      -> 1.2.0+git5.abc1234       (after the tag: sorts above 1.2.0)
#   abc1234 (no tag yet)   -> 0.1.0~git<commits>.abc1234  (below 0.1.0, rising with each commit)
#   ...-dirty              -> ....dirty
# PKG_BASE_VERSION (default 0.1.0) is the version before the first tag.
set -eu
d=${1:?usage: version.sh GIT_DESCRIBE}
base=${PKG_BASE_VERSION:-0.1.0}
dirty=
case $d in *-dirty) dirty=.dirty; d=${d%-dirty} ;; esac
if printf '%s' "$d" | grep -Eq '^v?[0-9][0-9.]*(-[0-9]+-g[0-9a-f]+)?$'; then
	v=$(printf '%s' "$d" | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)$/+git\1.\2/')
	[ -n "$dirty" ] && case $v in *+git*) ;; *) v="$v+git0" ;; esac
	echo "$v$dirty"
elif printf '%s' "$d" | grep -Eq '^[0-9a-f]{4,40}$'; then
	n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	echo "$base~git$n.$d$dirty"
else
	echo "version.sh: cannot make a Debian version of '$1' (want vX.Y.Z[-N-gSHA][-dirty] or SHA[-dirty])" >&2
	exit 1
fi
