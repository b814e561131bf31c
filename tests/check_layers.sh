#!/usr/bin/env bash
# Include rules of doc/architecture.md, derived from the folders. Prints each violation; exit 1
# if any. The layers and their folders come from the Makefile (LAYERS, dirs_LAYER), lowest
# first, as "base=src/base engine=src/engine:src/engine/cpu:gpu ..." in $EASEL_LAYERS (make
# check-layers passes it; run alone, the script asks make).
set -u
cd "$(dirname "$0")/.." || exit 1
layers=${EASEL_LAYERS:-$(make -s --no-print-directory print-layers 2>/dev/null | tail -n 1)}
[ -n "$layers" ] || { echo "check-layers: no layers (make print-layers printed nothing)"; exit 1; }
bad=0
say() { echo "check-layers: $*"; bad=1; }

declare -A rank=() home=() dirlayer=()
names=(); i=0
for spec in $layers; do
    name=${spec%%=*}; names+=("$name"); rank[$name]=$i; i=$((i + 1))
    IFS=: read -r -a ds <<<"${spec#*=}"
    for d in "${ds[@]}"; do
        dirlayer[$d]=$name
        for h in "$d"/*.h; do
            [ -e "$h" ] || continue
            b=${h##*/}
            [ -n "${home[$b]:-}" ] && say "$h: a header named $b is also in ${home[$b]#*:}; names must be unique"
            # -I of our folders comes before the system's: a header named like a system one
            # (sched.h, time.h) would hide it from every layer above.
            # err.h is the one exception: glibc's <err.h> (err(3), warn(3)) prints and exits,
            # which no easel code may do, so hiding it costs nothing.
            home[$b]="$name:$d"
            [ "$b" = err.h ] && continue
            for sys in /usr/include /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu; do
                [ -e "$sys/$b" ] && say "$h: $sys/$b exists; a header of ours with that name hides it (rename ours)"
            done
        done
    done
done

# Every source file is in a layer's folder: a file elsewhere in src/ has no layer.
for f in $(find src -name '*.[ch]' | sort); do
    [ -n "${dirlayer[${f%/*}]:-}" ] || say "$f: not in a layer's folder (see doc/architecture.md)"
done

# A file includes its own layer's headers and lower layers' only.
for d in "${!dirlayer[@]}"; do
    L=${dirlayer[$d]}
    for f in "$d"/*.[ch] "$d"/*.cu; do
        [ -e "$f" ] || continue
        for h in $(grep -oE '^[[:space:]]*#[[:space:]]*include *"[^"]+"' "$f" | sed -E 's/.*"([^"]+)"/\1/'); do
            hl=${home[${h##*/}]:-}
            [ -n "$hl" ] || continue
            hl=${hl%%:*}
            [ "${rank[$hl]}" -gt "${rank[$L]}" ] && say "$f: layer $L may not include $h (layer $hl)"
        done
    done
done

src_of() { local d; for d in "${!dirlayer[@]}"; do [ "${dirlayer[$d]}" = "$1" ] && ls "$d"/*.[ch] "$d"/*.cu 2>/dev/null; done; }
all=$(for n in "${names[@]}"; do src_of "$n"; done | sort)

for f in $all; do
    case "$f" in
        ui/*) ;;
        *) grep -qE '#include *[<"](ncurses|curses|sixel)' "$f" && say "$f: ncurses/libsixel belong in ui/" ;;
    esac
    case "$f" in
        src/store/*) ;;
        *) grep -qE '#include *[<"]sqlite3\.h' "$f" && say "$f: sqlite3.h only in src/store/"
           grep -qE '#include *"store_int\.h"' "$f" && say "$f: store_int.h is private to src/store/" ;;
    esac
    case "$f" in
        gpu/*) ;;
        *) grep -qE '#include *[<"](cuda|cublas|nvml|cudnn|nccl)' "$f" && say "$f: CUDA/NVML headers only in gpu/" ;;
    esac
done

# ui/ never calls the engine's ops: long work is a job.
for f in ui/*.[ch]; do
    for h in $(grep -oE '#include *"[^"]+"' "$f" | sed -E 's/.*"([^"]+)"/\1/'); do
        case "${home[${h##*/}]:-}" in
            *:src/engine*) say "$f: ui/ never calls the engine ($h); long work is a job" ;;
        esac
    done
done

# Library code never prints to stdout or exits: only src/cli/ (and base_die in base.c) may.
for f in $(grep '\.c$' <<<"$all" | grep -v '^src/cli/\|^ui/\|^src/base/base\.c$'); do
    hits=$(grep -nE '^[^/*]*[^_a-z](printf|puts|exit|abort) *\(' "$f" | grep -vE 'snprintf|fprintf|vsnprintf|asprintf' | head -n 3)
    [ -n "$hits" ] && { echo "$hits" | sed "s|^|check-layers: $f: no stdout/exit in library code: |"; bad=1; }
done
[ "$bad" = 0 ] && echo "check-layers: ok"
exit $bad
