#!/usr/bin/env bash
# Runs each benchmark binary given; each prints lines of the form
#   bench NAME: R.RRx vs PEER (ours A unit, peer B unit)
# bench_queue (ratings the `uncertain` annotate order needs vs `sequential` and `random`, on
# data/; doc/queue.md) reads data/ and so runs from the repository root, as `make bench` does.
set -u
rc=0
for bin in "$@"; do "$bin" || rc=1; done
exit $rc
