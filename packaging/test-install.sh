#!/usr/bin/env bash
# packaging/test-install.sh DEB MODEL [FOREIGN_DEB]: installs, checks, upgrades, removes and purges
# the stardetr package on THIS machine (root; adds the stardetr system user; purges any stardetr
# package installed before). `make test-deb` runs it; it is not part of `make test`.
#   1. a foreign-architecture package is refused by dpkg with a message naming the architecture
#   2. install (an older build of the same package): user stardetr in group video, state folder,
#      unit, conffile; `stardetr version` as the user finds the bundled ONNX Runtime and plugin
#   3. `stardetr check` as the stardetr user with the shipped config fails naming model.path;
#      with STARDETR_MODEL_PATH or a copied config pointing at MODEL it passes
#   4. upgrade keeps an edited conffile: silently when the packaged default did not change, and
#      with --force-confold (the new default then lands in config.yaml.dpkg-dist) when it did
#   5. remove keeps the config, the state and the user; purge deletes the config and the state and
#      keeps the system user (Debian practice for system users)
set -euo pipefail
deb=$(realpath "${1:?usage: test-install.sh DEB MODEL [FOREIGN_DEB]}")
model=$(realpath "${2:?usage: test-install.sh DEB MODEL [FOREIGN_DEB]}")
foreign=${3:-}
[ "$(id -u)" = 0 ] || { echo "test-install: needs root (dpkg -i, adduser)" >&2; exit 1; }
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
tmp=$(mktemp -d /tmp/stardetr-test-install.XXXXXX)
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }
ok() { echo "test-install: ok: $*"; }
conf=/etc/stardetr/config.yaml
# As the service runs it: the stardetr user, none of the caller's STARDETR_* variables, cwd /.
runuser=$(command -v runuser) || fail "runuser not found (util-linux)"
as_stardetr() { (cd / && env -i PATH=/usr/bin:/bin "$@" "$runuser" -u stardetr -- "${cmd[@]}"); }
status() { dpkg-query -W -f='${db:Status-Abbrev}${Version}' stardetr 2>/dev/null || true; }

if dpkg-query -W stardetr >/dev/null 2>&1; then
  echo "test-install: purging the installed stardetr $(status)"
  dpkg --purge stardetr >/dev/null
fi

# 1. Foreign architecture.
if [ -n "$foreign" ]; then
  out=$(dpkg -i "$foreign" 2>&1) && fail "dpkg installed $foreign on $(dpkg --print-architecture)"
  echo "$out" | grep -q "package architecture ($(dpkg-deb -f "$foreign" Architecture)) does not match system" ||
    fail "dpkg's refusal does not name the architecture: $out"
  [ -z "$(status)" ] || fail "a refused package left state: $(status)"
  ok "dpkg refuses $(basename "$foreign"): $(echo "$out" | grep -o 'package architecture.*' | head -1)"
fi

# Older builds of this package: the same files with Version 0.0.1~test, one with the same default
# config and one whose default config differs (a changed comment).
old_build() { # name sed-expression-for-config
  rm -rf "${tmp:?}/$1"
  dpkg-deb -R "$deb" "$tmp/$1"
  sed -i 's/^Version: .*/Version: 0.0.1~test/' "$tmp/$1/DEBIAN/control"
  if [ -n "$2" ]; then
    sed -i "$2" "$tmp/$1$conf"
    (cd "$tmp/$1" && md5sum etc/stardetr/config.yaml >"$tmp/md5" && grep -v ' etc/stardetr/config.yaml$' DEBIAN/md5sums >>"$tmp/md5" || true)
    mv "$tmp/md5" "$tmp/$1/DEBIAN/md5sums"
  fi
  dpkg-deb --root-owner-group -Zgzip -z1 -b "$tmp/$1" "$tmp/$1.deb" >/dev/null
}
old_build old-same ""
old_build old-diff '1s/^/# an older default\n/'

# 2. Install.
dpkg -i "$tmp/old-diff.deb" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "dpkg -i the older package"; }
grep -qi warning "$tmp/log" && { cat "$tmp/log" >&2; fail "dpkg -i printed warnings"; }
getent passwd stardetr | grep -q ':/var/lib/stardetr:/usr/sbin/nologin$' || fail "stardetr user: $(getent passwd stardetr)"
[ "$(id -u stardetr)" -lt 1000 ] || fail "stardetr is not a system user (uid $(id -u stardetr))"
id -nG stardetr | tr ' ' '\n' | grep -qx video || fail "stardetr is not in group video: $(id -nG stardetr)"
[ "$(stat -c '%U:%G %a' /var/lib/stardetr)" = "stardetr:stardetr 750" ] || fail "/var/lib/stardetr: $(stat -c '%U:%G %a' /var/lib/stardetr)"
[ -f /lib/systemd/system/stardetr.service ] || fail "unit missing"
dpkg-query -W -f='${Conffiles}' stardetr | grep -q "$conf" || fail "$conf is not a conffile"
cmd=(stardetr version)
out=$(as_stardetr) || { echo "$out" >&2; fail "stardetr version as the stardetr user"; }
echo "$out" | grep -q '^onnxruntime .*(/usr/lib/stardetr/libonnxruntime.so.1)' || fail "version does not use the bundled ONNX Runtime: $out"
echo "$out" | grep -q '^carafe .*(/usr/lib/stardetr/libstardetr_carafe.so)' || fail "version does not use the bundled plugin: $out"
ok "install: system user stardetr (uid $(id -u stardetr), groups $(id -nG stardetr | tr ' ' ,)), /var/lib/stardetr 0750, unit, conffile, bundled libraries found"

# 3. check as the service user.
cmd=(stardetr check --config "$conf")
out=$(as_stardetr 2>&1) && fail "check passed with the shipped config, whose model does not exist"
echo "$out" | grep -q 'model.path' || fail "check's error does not name model.path: $out"
echo "$out" | grep -q '/usr/share/stardetr/model.onnx' || fail "check's error does not name the missing file: $out"
ok "check with the shipped config fails: $(echo "$out" | grep model.path | sed 's/^ *//')"
install -m 0644 "$model" "$tmp/model.onnx"
out=$(as_stardetr STARDETR_MODEL_PATH="$tmp/model.onnx" 2>&1) || { echo "$out" >&2; fail "check with STARDETR_MODEL_PATH"; }
sed "s|^  path: /usr/share/stardetr/model.onnx|  path: $tmp/model.onnx|" "$conf" >"$tmp/config.yaml"
chmod 0644 "$tmp/config.yaml"
cmd=(stardetr check --config "$tmp/config.yaml")
out=$(as_stardetr 2>&1) || { echo "$out" >&2; fail "check with a copied config naming the model"; }
ok "check passes with STARDETR_MODEL_PATH and with a copied config: $(echo "$out" | tail -1)"

# 4. Upgrades keep an edited conffile.
sed -i 's/^log_level: info/log_level: debug/' "$conf"
dpkg --force-confdef --force-confold -i "$deb" </dev/null >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "upgrade"; }
[ "$(dpkg-query -W -f='${Version}' stardetr)" = "$(dpkg-deb -f "$deb" Version)" ] || fail "version after upgrade: $(status)"
grep -q '^log_level: debug' "$conf" || fail "upgrade lost the edit of $conf"
[ -f "$conf.dpkg-dist" ] || fail "upgrade with a changed default did not leave $conf.dpkg-dist"
ok "upgrade 0.0.1~test -> $(dpkg-deb -f "$deb" Version), changed default: edit kept, new default in $conf.dpkg-dist"
dpkg --purge stardetr >/dev/null
dpkg -i "$tmp/old-same.deb" >/dev/null 2>&1 || fail "dpkg -i the older package (same default config)"
# The user outlived the purge; the state folder made again must still be theirs.
[ "$(stat -c '%U:%G %a' /var/lib/stardetr)" = "stardetr:stardetr 750" ] || fail "reinstall: /var/lib/stardetr $(stat -c '%U:%G %a' /var/lib/stardetr)"
sed -i 's/^log_level: info/log_level: warn/' "$conf"
dpkg -i "$deb" </dev/null >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "upgrade without --force-conf* options"; }
grep -q '^log_level: warn' "$conf" || fail "upgrade lost the edit of $conf"
[ ! -e "$conf.dpkg-dist" ] || fail "upgrade with an unchanged default wrote $conf.dpkg-dist"
ok "upgrade, unchanged default: edit kept without a prompt"

# 5. Remove, then purge.
echo state >/var/lib/stardetr/queue.test
dpkg --remove stardetr >/dev/null
[ ! -e /usr/bin/stardetr ] && [ ! -e /usr/lib/stardetr ] || fail "remove left the program"
[ -f "$conf" ] && [ -f /var/lib/stardetr/queue.test ] && getent passwd stardetr >/dev/null || fail "remove deleted the config, the state or the user"
ok "remove: program gone; config, state and user kept"
dpkg --purge stardetr >/dev/null
[ ! -e /etc/stardetr ] || fail "purge left /etc/stardetr: $(ls -A /etc/stardetr)"
[ ! -e /var/lib/stardetr ] || fail "purge left /var/lib/stardetr"
[ -z "$(status)" ] || [ "$(status)" = "pn" ] || fail "purge left dpkg state: $(status)"
getent passwd stardetr >/dev/null || fail "purge deleted the system user"
ok "purge: /etc/stardetr and /var/lib/stardetr gone; system user stardetr kept"
