#!/usr/bin/env bash
# packaging/test-static.sh DEB...: checks of built packages that change nothing on the machine:
#   - lintian: no errors and no warnings (overrides, each justified, in packaging/lintian-overrides)
#   - control fields, conffiles, file list, ELF architecture of every shipped binary
#   - systemd-analyze verify of the unit (alone and with the Jetson drop-in) in a root made of the
#     package's files and the host's systemd units
#   - systemd-analyze security: overall exposure <= 3.0, printed
# Prints one line per check; exits 1 on the first failure, naming it.
set -euo pipefail
fail() { echo "test-static: FAIL: $*" >&2; exit 1; }
ok() { echo "test-static: ok: $*"; }
[ $# -gt 0 ] || fail "usage: test-static.sh DEB..."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
max_exposure=3.0

for deb in "$@"; do
  [ -f "$deb" ] || fail "$deb does not exist (run make deb)"
  name=$(basename "$deb")
  arch=$(dpkg-deb -f "$deb" Architecture)
  case $arch in amd64) machine=X86-64 ;; arm64) machine=AArch64 ;; *) fail "$name: Architecture '$arch'" ;; esac
  [ "$name" = "stardetr_$(dpkg-deb -f "$deb" Version)_$arch.deb" ] || fail "$name: file name does not match its Version/Architecture fields"

  # lintian exits non-zero on errors/warnings with --fail-on; the overrides ship in the package.
  out=$(lintian --fail-on error,warning "$deb" 2>&1) ||
    { echo "$out" >&2; fail "$name: lintian reports errors or warnings"; }
  ok "$name: lintian: no errors, no warnings"

  # Fields and files a user relies on.
  deps=$(dpkg-deb -f "$deb" Depends)
  for d in libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 libopencv-videoio406 adduser 'libc6 (>='; do
    [[ $deps == *"$d"* ]] || fail "$name: Depends lacks $d: $deps"
  done
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/stardetr/config.yaml ] ||
    fail "$name: conffiles must list exactly /etc/stardetr/config.yaml"
  root=$tmp/$arch
  mkdir -p "$root"
  dpkg-deb -x "$deb" "$root"
  for f in usr/bin/stardetr usr/lib/stardetr/libstardetr_carafe.so usr/lib/stardetr/libonnxruntime.so.1 \
    etc/stardetr/config.yaml lib/systemd/system/stardetr.service usr/share/doc/stardetr/copyright \
    usr/share/doc/stardetr/changelog.gz usr/share/doc/stardetr/README.md usr/share/doc/stardetr/examples/jetson.conf \
    usr/share/man/man1/stardetr.1.gz; do
    [ -f "$root/$f" ] || fail "$name: /$f missing"
  done
  for f in usr/bin/stardetr usr/lib/stardetr/libstardetr_carafe.so usr/lib/stardetr/libonnxruntime.so.1; do
    readelf -h "$root/$f" | grep -q "Machine: *.*$machine" || fail "$name: /$f is not a $machine ELF file"
  done
  grep -q '^  path: /usr/share/stardetr/model.onnx' "$root/etc/stardetr/config.yaml" || fail "$name: config.yaml model.path"
  ok "$name: Depends, conffiles, files, $machine ELF files"
done

# The unit: verify in a root holding the package's files plus the host's units (targets it names).
root=$tmp/$(dpkg-deb -f "$1" Architecture)
unit=lib/systemd/system/stardetr.service
cp -an /lib/systemd/system/. "$root/lib/systemd/system/"
mkdir -p "$root/bin" && cp /bin/kill "$root/bin/kill"
for s in ExecStartPre=/usr/bin/stardetr Type=notify WatchdogSec= Restart=on-failure User=stardetr \
  SupplementaryGroups=video StateDirectory=stardetr ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  NoNewPrivileges=yes LimitNOFILE=4096 'DeviceAllow=char-video4linux' 'CapabilityBoundingSet=$' 'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -q "^$s" "$root/$unit" || fail "stardetr.service lacks $s"
done
out=$(systemd-analyze verify --root="$root" --man=no "/$unit" 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify stardetr.service"; }
[ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify stardetr.service printed warnings"; }
exposure() {
  systemd-analyze security --offline=true --root="$root" stardetr.service 2>&1 |
    sed -n 's/.*Overall exposure level for stardetr.service: \([0-9.]*\).*/\1/p'
}
e=$(exposure)
[ -n "$e" ] || fail "systemd-analyze security printed no exposure level"
awk -v e="$e" -v m="$max_exposure" 'BEGIN{exit !(e <= m)}' || fail "stardetr.service exposure $e > $max_exposure"
ok "stardetr.service: systemd-analyze verify clean; security exposure $e (limit $max_exposure)"

mkdir -p "$root/etc/systemd/system/stardetr.service.d"
cp "$root/usr/share/doc/stardetr/examples/jetson.conf" "$root/etc/systemd/system/stardetr.service.d/"
out=$(systemd-analyze verify --root="$root" --man=no "/$unit" 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify with jetson.conf"; }
[ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify with jetson.conf printed warnings"; }
ok "stardetr.service + jetson.conf: systemd-analyze verify clean; security exposure $(exposure)"
