#!/usr/bin/env bash
# stress.sh — run the tests repeatedly while the CPUs are kept busy, and print
# how often each test failed. A test that fails once in twenty runs is a defect:
# CI runs the suite once, on a 2-core machine, and one red run rejects it all.
#
# Usage: scripts/stress.sh [unit] [terminal] [integration]   (default: all three)
#   unit         go test -short -count=$UNIT_COUNT over every package but ./tests/...
#   terminal     the pseudo-terminal tests of cmd/cloudctl (skipped by -short), -count=$UNIT_COUNT
#   integration  the multi-node tests in ./tests/, -count=$INTEGRATION_COUNT
# Environment: UNIT_COUNT (20), INTEGRATION_COUNT (2), BUSY (busy loops; the number of CPUs),
#   STRESS_OUT (where the go test -json streams are kept; a new temporary directory).
# Exit status: non-zero if any test or package failed.
set -u
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH CGO_ENABLED=1

TAGS="pacific libsqlite3"
UNIT_COUNT=${UNIT_COUNT:-20}
INTEGRATION_COUNT=${INTEGRATION_COUNT:-2}
BUSY=${BUSY:-$(nproc)}
OUT=${STRESS_OUT:-$(mktemp -d /tmp/cloudctl-stress-XXXXXX)}
mkdir -p "$OUT"

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(unit terminal integration)
for s in "${stages[@]}"; do
	case $s in unit | terminal | integration) ;; *)
		echo "stress.sh: unknown stage \"$s\"; use unit, terminal and/or integration" >&2
		exit 2
		;;
	esac
done

# Busy loops: started here, killed by their pids on any exit.
busy_pids=()
stop_busy() {
	if [ ${#busy_pids[@]} -gt 0 ]; then
		kill "${busy_pids[@]}" 2>/dev/null
		wait "${busy_pids[@]}" 2>/dev/null
	fi
	busy_pids=()
}
trap stop_busy EXIT
trap 'stop_busy; exit 130' INT TERM
for ((i = 0; i < BUSY; i++)); do
	(while :; do :; done) &
	busy_pids+=($!)
done
echo "==> $BUSY busy loops (pids ${busy_pids[*]}); go test -json output in $OUT"

status=0
run_stage() { # name, go test arguments...
	local name=$1
	shift
	echo "==> $name: go test $*"
	local start=$SECONDS
	go test -tags "$TAGS" -json "$@" >"$OUT/$name.json" 2>"$OUT/$name.stderr"
	local rc=$?
	echo "    exit $rc after $((SECONDS - start))s"
	[ $rc -ne 0 ] && status=1
	[ -s "$OUT/$name.stderr" ] && sed 's/^/    stderr: /' "$OUT/$name.stderr" | head -20
}

for s in "${stages[@]}"; do
	case $s in
	unit)
		mapfile -t pkgs < <(go list -tags "$TAGS" ./... | grep -v '/tests\($\|/\)')
		run_stage unit -short -count="$UNIT_COUNT" -timeout 60m "${pkgs[@]}"
		;;
	terminal)
		run_stage terminal -count="$UNIT_COUNT" -timeout 60m -run 'InTerminal' ./cmd/cloudctl/
		;;
	integration)
		run_stage integration -count="$INTEGRATION_COUNT" -p 1 -timeout 180m ./tests/
		;;
	esac
done
stop_busy

# The table: one row per test (subtests only when they failed, and a
# "(package)" row when a package failed outside a test: build error, panic,
# timeout), failures first; then the output of each failing test's first failure.
summary=$(
	for s in "${stages[@]}"; do cat "$OUT/$s.json"; done | awk '
	function field(name,   re, v) {
		re = "\"" name "\":\"([^\"\\\\]|\\\\.)*\""
		if (!match($0, re)) return ""
		v = substr($0, RSTART + length(name) + 4, RLENGTH - length(name) - 5)
		return v
	}
	/^\{/ {
		action = field("Action"); pkg = field("Package"); test = field("Test")
		sub(/^github\.com\/cloudctl\/cloudctl\/?/, "./", pkg)
		key = pkg "\t" (test == "" ? "(package)" : test)
		if (action == "run") { out[key] = "" }
		else if (action == "output") {
			o = field("Output"); gsub(/\\n/, "", o); gsub(/\\t/, "    ", o); gsub(/\\"/, "\"", o)
			if (length(out[key]) < 6000) out[key] = out[key] "        " o "\n"
		} else if (action == "pass" || action == "fail" || action == "skip") {
			if (test == "" && action != "fail") next
			seen[key] = 1
			if (action == "fail") { fails[key]++; if (!(key in first)) first[key] = out[key] }
			else if (action == "pass") passes[key]++
			else skips[key]++
		}
	}
	END {
		for (k in seen) {
			split(k, p, "\t")
			printf "%d\t%d\t%d\t%s\t%s\n", fails[k] + 0, passes[k] + 0, skips[k] + 0, p[1], p[2]
		}
		for (k in first) {
			split(k, p, "\t")
			printf "FIRSTFAIL\t%s %s\n%s", p[1], p[2], first[k] > "/dev/stderr"
		}
	}' 2>"$OUT/first-failures.txt" | sort -t$'\t' -k1,1nr -k4,4 -k5,5
)

echo
printf '%-6s %-6s %-6s %-28s %s\n' FAILS PASSES SKIPS PACKAGE TEST
total_fail=0
while IFS=$'\t' read -r f p sk pkg test; do
	[ -z "$pkg" ] && continue
	[ "$f" = 0 ] && [[ $test == */* ]] && continue
	printf '%-6s %-6s %-6s %-28s %s\n' "$f" "$p" "$sk" "$pkg" "$test"
	total_fail=$((total_fail + f))
done <<<"$summary"
echo
if [ -s "$OUT/first-failures.txt" ]; then
	echo "==> first failure of each failing test (full streams in $OUT):"
	sed 's/^FIRSTFAIL\t/--- /' "$OUT/first-failures.txt" | head -400
fi
if [ $total_fail -ne 0 ] || [ $status -ne 0 ]; then
	echo "stress: FAILED ($total_fail failed runs; go test exit status $status)"
	exit 1
fi
echo "stress: no failure"
