#!/usr/bin/env bash
# make demo / make demo-down: a 3-node cloudctl cluster on this machine, each
# node a network namespace on a private bridge running the real cloudd.
#   demo.sh up DIR     start it (node1 bootstraps with all roles, node2 and node3 join)
#   demo.sh down DIR   stop the daemons it started and remove namespaces and state
set -euo pipefail

action=${1:-up}
DIR=${2:-/tmp/cloudctl-demo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/bin
PFX=ccdemo
SUBNET=10.252.77
NODES=3

ctl() { # ctl N args... : cloudctl inside node N's namespace
  local n=$1; shift
  ip netns exec "$PFX-n$n" "$BIN/cloudctl" --state-dir "$DIR/node$n" "$@"
}

ours() { # is PID a cloudd we started for this demo?
  local pid=$1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "cloudd --state-dir $DIR/node"
}

down() {
  for n in $(seq 1 $NODES); do
    f=$DIR/node$n.pid
    if [ -f "$f" ]; then
      pid=$(cat "$f")
      if ours "$pid"; then kill "$pid" 2>/dev/null || true; fi
    fi
  done
  # cloudd stops its MariaDB instances on SIGTERM: give it time to.
  for _ in $(seq 1 60); do
    alive=0
    for n in $(seq 1 $NODES); do
      f=$DIR/node$n.pid
      [ -f "$f" ] && ours "$(cat "$f")" && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.5
  done
  for n in $(seq 1 $NODES); do
    f=$DIR/node$n.pid
    if [ -f "$f" ]; then
      pid=$(cat "$f")
      if ours "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    ip netns del "$PFX-n$n" 2>/dev/null || true
  done
  ip netns del "$PFX-br" 2>/dev/null || true
  ip route del unreachable "$SUBNET.0/24" 2>/dev/null || true
  rm -rf "$DIR"
  echo "demo: stopped and cleaned up ($DIR removed)."
}

up() {
  [ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)"; exit 1; }
  [ -x "$BIN/cloudd" ] && [ -x "$BIN/cloudctl" ] || { echo "demo: run 'make build' first"; exit 1; }
  if [ -f "$DIR/node1.pid" ] && ours "$(cat "$DIR/node1.pid")"; then
    echo "demo: already running in $DIR (make demo-down to stop it)."
    ctl 1 status
    exit 0
  fi
  down >/dev/null 2>&1 || true
  mkdir -p "$DIR"
  echo "==> Creating $NODES nodes as network namespaces on $SUBNET.0/24"
  ip netns add "$PFX-br"
  ip -n "$PFX-br" link add br0 type bridge
  ip -n "$PFX-br" link set br0 up
  # Packets from the root namespace to the demo subnet fail here instead of
  # leaving through the real gateway.
  ip route add unreachable "$SUBNET.0/24"
  for n in $(seq 1 $NODES); do
    ns=$PFX-n$n
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "${PFX}v$n" type veth peer name eth0 netns "$ns"
    ip link set "${PFX}v$n" netns "$PFX-br"
    ip -n "$PFX-br" link set "${PFX}v$n" master br0
    ip -n "$PFX-br" link set "${PFX}v$n" up
    ip -n "$ns" addr add "$SUBNET.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$DIR/node$n"
    setsid ip netns exec "$ns" "$BIN/cloudd" --state-dir "$DIR/node$n" >"$DIR/node$n.log" 2>&1 < /dev/null &
    echo $! > "$DIR/node$n.pid"
  done
  for n in $(seq 1 $NODES); do
    for _ in $(seq 1 100); do
      ctl "$n" version >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  echo "==> node1: bootstrap with roles control,compute,storage"
  ctl 1 bootstrap --name node1 --address "$SUBNET.1" --role control,compute,storage
  for n in 2 3; do
    echo "==> node$n: join as control,compute,storage (the token goes through standard input)"
    ctl 1 cluster add "node$n" --quiet | ctl "$n" cluster join - --name "node$n" --address "$SUBNET.$n" --role control,compute,storage
  done
  for n in 1 2 3; do
    echo "==> node$n: a file-backed OSD (loop:8GiB, a sparse file: for demos, not for production)"
    ctl 1 storage disk add "node$n" loop:8GiB
  done
  echo "==> The floating address $SUBNET.100 in front of the control plane (keepalived + HAProxy)"
  ctl 1 cluster set floating-address "$SUBNET.100/24"
  echo "==> Waiting for every layer to be highly available (Galera, Ceph, LXD, the floating address)"
  ha=""
  for _ in $(seq 1 72); do
    ha=$(ctl 1 status 2>/dev/null | grep '^HA:' || true)
    [ "$ha" = "HA: yes" ] && break
    echo "    $ha"
    sleep 5
  done
  echo
  ctl 1 status
  cat <<TXT

The demo cluster is up: 3 nodes in network namespaces $PFX-n1..3, state in $DIR.
Use it (as root) from this shell; each node's CLI talks to its own daemon:

  $BIN/cloudctl --state-dir $DIR/node1 status
  $BIN/cloudctl --state-dir $DIR/node1 storage disk list
  $BIN/cloudctl --state-dir $DIR/node1 compute access
  $BIN/cloudctl --state-dir $DIR/node1 cluster tokens list
  $BIN/cloudctl --state-dir $DIR/node1 database list
  $BIN/cloudctl --state-dir $DIR/node1 database credentials identity

Or set CLOUDCTL_STATE_DIR=$DIR/node1 and drop the flag. Daemon logs: $DIR/node*.log
Tear it down with: make demo-down
TXT
}

case "$action" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]"; exit 2 ;;
esac
