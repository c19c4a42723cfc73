#!/usr/bin/env bash
# debian_package: `dpkg-buildpackage -b -us -uc`, run in a copy of the source
# tree (never in the tree itself), builds a .deb that holds both programs, the
# template unit, the configuration example and the gzipped man pages, depends
# on libnats, and neither enables nor starts the unit on install.
# Exit 77 (skip) only where dpkg-buildpackage or debhelper is absent.
set -euo pipefail
src=${MESON_SOURCE_ROOT:?}
BUILD_TIMEOUT_S=540 # under meson's 600 s, so a hung build is reported here

for tool in dpkg-buildpackage:dpkg-dev dh:debhelper; do
  command -v "${tool%%:*}" >/dev/null \
    || { echo "${tool%%:*} not found (package ${tool#*:}, installed by scripts/deps): skipping"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The copy is the working tree as git sees it: tracked files plus untracked
# ones that are not ignored, so build directories stay behind.
tree="$tmp/cotal-deliveryd"
mkdir "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$src" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e $src/$f || -L $src/$f ]] && printf '%s\0' "$f"; done \
    | tar -C "$src" --null -T - -cf - | tar -xf - -C "$tree"
else
  tar -C "$src" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude='./obj-*' -cf - . \
    | tar -xf - -C "$tree"
fi
[[ -x $tree/debian/rules ]] || fail "debian/rules missing or not executable in the copy of $src"

opts=${DEB_BUILD_OPTIONS:-}
[[ $opts == *parallel=* ]] || opts+="${opts:+ }parallel=$(nproc)"
start=$SECONDS
if ! (cd "$tree" && DEB_BUILD_OPTIONS=$opts exec timeout -k 10 "$BUILD_TIMEOUT_S" \
        dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1; then
  echo "FAIL: dpkg-buildpackage -b -us -uc failed or ran past ${BUILD_TIMEOUT_S} s; end of its log:"
  tail -n 40 "$tmp/build.log"
  exit 1
fi
echo "dpkg-buildpackage: $((SECONDS - start)) s"

debs=("$tmp"/cotal-deliveryd_*.deb)
deb=${debs[0]}
[[ -f $deb ]] || fail "dpkg-buildpackage succeeded but left no cotal-deliveryd_*.deb in $tmp"

# Where meson puts the unit: systemd.pc's directory, as in meson.build.
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)
unitdir=${unitdir:-/lib/systemd/system}
unit="$unitdir/cotal-deliveryd@.service"

listing=$(dpkg -c "$deb")
missing=()
for p in /usr/bin/cotal-deliveryd /usr/bin/cotal-deliveryctl "$unit" \
         /etc/cotal/deliveryd.conf.example \
         /usr/share/man/man8/cotal-deliveryd.8.gz /usr/share/man/man8/cotal-deliveryctl.8.gz; do
  awk -v p=".$p" '$6 == p { found = 1 } END { exit !found }' <<<"$listing" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "FAIL: $(basename "$deb") lacks: ${missing[*]}"
  echo "dpkg -c:"; echo "$listing"
  exit 1
fi
for p in /usr/bin/cotal-deliveryd /usr/bin/cotal-deliveryctl; do
  mode=$(awk -v p=".$p" '$6 == p { print $1 }' <<<"$listing")
  [[ $mode == -rwxr-xr-x ]] || fail "$p has mode $mode, not -rwxr-xr-x"
done

# The packaged unit runs the packaged binary.
exec_line=$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ".$unit" | grep '^ExecStart=' || true)
[[ $exec_line == "ExecStart=/usr/bin/cotal-deliveryd --space %i "* ]] \
  || fail "packaged unit does not run /usr/bin/cotal-deliveryd: '${exec_line}'"

depends=$(dpkg -I "$deb" | grep '^ Depends:' || true)
[[ $depends == *libnats* ]] || fail "no Depends on libnats in $(basename "$deb"): '${depends# }'"

# Nothing enabled or started on install: the instance is a space whose creds
# the operator installs first.
mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control"
for s in preinst postinst prerm postrm; do
  [[ -f $tmp/control/$s ]] || continue
  if hit=$(grep -nE 'deb-systemd-invoke +(start|restart)|systemctl +([^ ]+ +)*(start|restart|enable)' \
             "$tmp/control/$s"); then
    fail "$s starts or enables a unit: $hit"
  fi
done

echo "$listing"
echo "OK: $(basename "$deb"): binaries, $unit, configuration example and man pages present; ${depends# }"
