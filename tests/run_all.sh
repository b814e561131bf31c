#!/usr/bin/env bash
# Runs each Criterion test binary given, then prints one closing line for all of them:
#   "N passed, N failed, N skipped". Exit 1 if any test failed or a binary crashed.
set -u
passed=0; failed=0; skipped=0; crashed_bins=""
for bin in "$@"; do
    name=$(basename "$bin")
    out=$(mktemp)
    "$bin" -j2 --verbose=0 >"$out" 2>&1 </dev/null
    rc=$?
    synth=$(grep -a 'Synthesis:' "$out" | tail -n1)
    if [ -z "$synth" ]; then
        echo "FAIL $name: no test summary (exit $rc)"; tail -n 30 "$out"
        failed=$((failed + 1)); crashed_bins="$crashed_bins $name"; rm -f "$out"; continue
    fi
    t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$synth")
    p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$synth")
    f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$synth")
    c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$synth")
    s=$(grep -ac '\[SKIP\]' "$out")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$f" != 0 ] || [ "$c" != 0 ] || [ "$rc" != 0 ]; then
        echo "FAIL $name: $synth"; grep -a -E 'FAIL|CRASH|Assertion|Warning|error' "$out" | head -n 40
    else
        echo "ok   $name: $p passed${s:+, $s skipped}"
        grep -a '\[SKIP\]' "$out" | sed 's/^/     /' | head -n 10
        grep -a '^harness: covered' "$out" | sed 's/^/     /'
    fi
    rm -f "$out"
done
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
