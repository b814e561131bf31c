#!/usr/bin/env bash
# Creates the virtual environment the Python peers of `make bench` run in (default build/venv)
# and installs bench/requirements.txt into it. Idempotent: once everything is installed it
# writes VENV/.easel-stamp (holding a hash of the requirements) and does nothing the next time.
#
#   bash bench/venv.sh [VENV]
#
# PYTHON picks the interpreter (default python3). The log of pip is VENV.log.
set -u
venv=${1:-build/venv}
req=bench/requirements.txt
stamp=$venv/.easel-stamp
log=$venv.log
py=${PYTHON:-python3}
want=$(sha256sum "$req" | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi

fail() {
    echo "easel: $1" >&2
    if [ -s "$log" ]; then echo "easel: the last lines of $log:" >&2; tail -n 15 "$log" >&2; fi
    echo "easel: fix the cause and run make bench again to install them (it resumes where it" \
         "stopped)" >&2
    exit 1
}

mkdir -p "$(dirname "$venv")"
: > "$log"
echo "easel: installing the Python peers of make bench into $venv (once; torch, open_clip," \
     "diffusers, peft: several minutes, log in $log)" >&2
if [ ! -x "$venv/bin/python" ]; then
    command -v "$py" >/dev/null 2>&1 || fail "$py not found: install Python 3 (apt-get install python3 python3-venv)"
    "$py" -m venv "$venv" >>"$log" 2>&1 ||
        fail "$py -m venv $venv failed (on Debian: apt-get install python3-venv)"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --timeout 60 --retries 2)

# torch: the CPU-only wheel when the PyTorch index answers, else PyPI's default build.
if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "easel: installing torch (CPU build from download.pytorch.org/whl/cpu)" >&2
    if ! "${pip[@]}" install --timeout 20 --retries 1 --index-url https://download.pytorch.org/whl/cpu \
            torch >>"$log" 2>&1; then
        echo "easel: the PyTorch CPU index did not answer; installing torch from PyPI instead" \
             "(a larger download)" >&2
        "${pip[@]}" install torch >>"$log" 2>&1 || fail "pip could not install torch"
    fi
fi
echo "easel: installing $(grep -v '^#' "$req" | grep -v '^torch$' | tr '\n' ' ')" >&2
"${pip[@]}" install -r "$req" >>"$log" 2>&1 || fail "pip install -r $req failed"
"$venv/bin/python" -c 'import torch, open_clip, diffusers, peft, safetensors, PIL, numpy, ftfy, regex' \
    >>"$log" 2>&1 || fail "the peers' modules do not import in $venv"
echo "$want" > "$stamp"
echo "easel: Python peers ready in $venv" >&2
