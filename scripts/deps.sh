#!/usr/bin/env bash
# Installs what cloudctl needs to build, test and demo on Debian 12, idempotently:
# the Debian packages (build libraries and the real components the roles run) and
# the Go modules. Called by `make test` and `make demo`.
set -euo pipefail

PKGS=(
  gcc make pkg-config git
  libdqlite-dev libraft-dev libsqlite3-dev librados-dev librbd-dev
  iproute2 nftables procps util-linux tmux
  mariadb-server mariadb-client galera-4 rsync stunnel4
  ceph udev lxd keepalived haproxy socat e2fsprogs lvm2 xfsprogs gdisk parted
  cryptsetup-bin mount gpg
  busybox-static dnsmasq-base lxd-client
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their services while they install (cloudctl
  # starts its own): a policy-rc.d says so for the duration of the install,
  # and is removed afterwards, also on failure, only if this script added it.
  # (CLOUDCTL_POLICY_RC moves it, for the script's own test.)
  policy=${CLOUDCTL_POLICY_RC:-/usr/sbin/policy-rc.d}
  added=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# added by cloudctl scripts/deps.sh for the duration of a package install\nexit 101\n' > "$policy"
    chmod +x "$policy"
    added=$policy
    trap 'rm -f "$added"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$added" ]; then
    rm -f "$added"
    trap - EXIT
  fi
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { echo "deps: Go is not installed (expected at /usr/local/go)" >&2; exit 1; }

go mod download
echo "deps: ok"
