#!/usr/bin/env bash
# Runs each benchmark binary given; each prints lines of the form
#   bench NAME: R.RRx vs PEER (ours A unit, peer B unit)
# bench_queue (ratings the `uncertain` annotate order needs vs `sequential` and `random`, on
# data/; doc/queue.md) reads data/ and so runs from the repository root, as `make bench` does.
set -u
# The Python peers run with the python3 of $EASEL_BENCH_VENV (default build/venv, made by
# bench/venv.sh from `make bench`), put first on PATH; set but empty: the system's python3.
venv=${EASEL_BENCH_VENV-build/venv}
if [ -n "$venv" ] && [ -x "$venv/bin/python3" ]; then
    export VIRTUAL_ENV=$(cd "$venv" && pwd)
    export PATH="$VIRTUAL_ENV/bin:$PATH"
elif [ -n "$venv" ]; then
    echo "bench: no Python peers in $venv (make bench installs them); using" \
         "$(command -v python3 || echo 'no python3')" >&2
fi
rc=0
for bin in "$@"; do "$bin" || rc=1; done
exit $rc
