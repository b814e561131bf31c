#!/usr/bin/env bash
# Runs each benchmark binary given; each prints lines of the form
#   bench NAME: R.RRx vs PEER (ours A unit, peer B unit)
set -u
rc=0
for bin in "$@"; do "$bin" || rc=1; done
exit $rc
