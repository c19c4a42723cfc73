#!/usr/bin/env bash
# systemd_units: the installed unit passes `systemd-analyze verify`, its
# offline security exposure is at most 2.0, and `meson install` puts the
# binaries, unit, configuration example and man pages where they belong.
# Exit 77 (skip) only where systemd-analyze is absent.
set -euo pipefail
build=${MESON_BUILD_ROOT:?}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found: skipping"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --destdir "$tmp/root" --quiet >/dev/null
unit=$(find "$tmp/root" -name 'cotal-deliveryd@.service' | head -1)
[[ -n $unit ]] || { echo "FAIL: unit not installed"; exit 1; }
for f in bin/cotal-deliveryd bin/cotal-deliveryctl share/man/man8/cotal-deliveryd.8 \
         share/man/man8/cotal-deliveryctl.8 etc/cotal/deliveryd.conf.example; do
  found=$(find "$tmp/root" -path "*/$f" | head -1)
  [[ -n $found ]] || { echo "FAIL: $f not installed"; exit 1; }
done
# ExecStart names the installed binary (the configured prefix's bindir).
prefix=$(meson introspect "$build" --buildoptions | python3 -c \
  'import json,sys; o={x["name"]:x["value"] for x in json.load(sys.stdin)}; print(o["prefix"] + "/" + o["bindir"])')
grep -q "^ExecStart=$prefix/cotal-deliveryd --space %i " "$unit" \
  || { echo "FAIL: ExecStart is not $prefix/cotal-deliveryd: $(grep ExecStart "$unit")"; exit 1; }
# cotal-deliveryctl diag looks for the socket where RuntimeDirectory= puts
# it; systemctl reload sends SIGHUP.
for line in '^RuntimeDirectory=cotal-deliveryd/%i$' '^RuntimeDirectoryMode=0700$' \
            '^ExecReload=/bin/kill -HUP \$MAINPID$' '^LoadCredential=delivery.creds:'; do
  grep -q "$line" "$unit" || { echo "FAIL: the unit has no line matching $line"; exit 1; }
done

# verify needs the binary where ExecStart says and an instance name.
mkdir -p "$tmp/units"
sed "s|^ExecStart=[^ ]*/cotal-deliveryd |ExecStart=$build/src/cotal-deliveryd |" "$unit" \
  > "$tmp/units/cotal-deliveryd@main.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/units/cotal-deliveryd@main.service" 2>&1); then
  echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1
fi
[[ -z $out ]] || { echo "FAIL: systemd-analyze verify warned:"; echo "$out"; exit 1; }

line=$(systemd-analyze security --offline=true "$tmp/units/cotal-deliveryd@main.service" 2>/dev/null \
       | grep 'Overall exposure level')
level=$(sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/' <<<"$line")
echo "security: $line"
awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || { echo "FAIL: exposure $level > 2.0"; exit 1; }
echo "OK: unit verified, exposure $level, install layout complete"
