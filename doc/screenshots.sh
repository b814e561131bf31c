#!/usr/bin/env bash
# Screenshots of the Annotate screen in a real xterm (sixel: -ti vt340) under Xvfb, on a
# light (xterm's default: black on white) and a dark (white on black) background, into
# doc/img/annotate-light.png and doc/img/annotate-dark.png, with xterm's default TERM=xterm
# (8 colours). The theme is easel's default
# choice: it asks xterm for its background (OSC 11) and takes light or dark.
#
#   bash doc/screenshots.sh        (after make; needs Xvfb, xterm, xwd, xdotool, ImageMagick)
set -eu
cd "$(dirname "$0")/.."
out=doc/img
tmp=$(mktemp -d /tmp/easel-shots-XXXXXX)
trap 'kill $xvfb 2>/dev/null; rm -rf "$tmp"' EXIT
for t in Xvfb xterm xwd xdotool convert; do
    command -v $t >/dev/null || { echo "screenshots: $t is not installed" >&2; exit 1; }
done
# a copy of the demo store, one image half rated so the screen shows values and the selection
bin/easel --db "$tmp/demo.db" init >/dev/null
bin/easel --db "$tmp/demo.db" import prompts data/prompts.csv >/dev/null 2>&1
bin/easel --db "$tmp/demo.db" import images data/images >/dev/null 2>&1
exec 3>"$tmp/dpy"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
for _ in $(seq 50); do [ -s "$tmp/dpy" ] && break; sleep 0.1; done
dpy=":$(cat "$tmp/dpy")"
shot() { # NAME XTERM-COLOUR-ARGS...
    local name=$1; shift
    xterm -display "$dpy" -ti vt340 -b 0 -bw 0 -geometry 120x36+0+0 -fa Monospace -fs 11 \
        -xrm 'XTerm*numColorRegisters: 256' -xrm 'XTerm*cursorBlink: false' "$@" \
        -e sh -c "printf '\\033[?25l'; cd '$tmp' && EASEL_ANNOTATOR=alice exec '$PWD/bin/easel' --db demo.db annotate --order id" &
    local x=$!
    sleep 3
    # type 7, 8, t for the first three aspects: values, bars and the selection on aspect 4
    for k in 7 8 t; do
        xdotool_type "$k"
    done
    sleep 1.5
    local win
    win=$(DISPLAY=$dpy xdotool search --onlyvisible --class xterm | head -n 1)
    xwd -display "$dpy" -id "$win" -silent | convert xwd:- "$out/$name.png"
    kill $x 2>/dev/null || true
    wait $x 2>/dev/null || true
}
xdotool_type() { DISPLAY=$dpy xdotool type --delay 100 "$1"; }
shot annotate-light
shot annotate-dark -bg black -fg white
echo "screenshots: wrote $out/annotate-light.png and $out/annotate-dark.png"
