#!/usr/bin/env bash
# Include rules of doc/architecture.md. Prints each violation; exit 1 if any.
set -u
cd "$(dirname "$0")/.." || exit 1
bad=0
say() { echo "check-layers: $*"; bad=1; }
engine_files=$(ls src/base.* src/err.* src/log.* src/tensor*.[ch] src/nn_*.[ch] src/backend*.[ch] \
               src/optim*.[ch] src/rng*.[ch] gpu/*.[ch] 2>/dev/null)
for f in $(ls src/*.[ch] gpu/*.[ch] gpu/*.cu 2>/dev/null); do
    grep -qE '#include *[<"](ncurses|curses|sixel)' "$f" && say "$f: ncurses/libsixel belong in ui/"
done
for f in $(ls src/*.[ch] ui/*.[ch] gpu/*.[ch] 2>/dev/null | grep -v '^src/store'); do
    grep -qE '#include *[<"]sqlite3\.h' "$f" && say "$f: sqlite3.h only in src/store*.c"
    grep -qE '#include *"store_int\.h"' "$f" && say "$f: store_int.h is private to src/store*.c"
done
for f in $(ls src/*.[ch] ui/*.[ch] 2>/dev/null); do
    grep -qE '#include *[<"](cuda|cublas|nvml|cudnn|nccl)' "$f" && say "$f: CUDA/NVML headers only in gpu/"
done
for f in $(ls ui/*.[ch] 2>/dev/null); do
    grep -qE '#include *"(tensor|nn_|backend|optim)' "$f" && say "$f: ui/ never calls the engine; long work is a job"
done
for f in $engine_files; do
    grep -oE '#include *"[^"]+"' "$f" | sed -E 's/.*"([^"]+)"/\1/' | while read -r h; do
        case "$h" in
            base.h|err.h|log.h|tensor*|nn_*|backend*|optim*|rng*|gpu*|kern_*|cuda.h|nvml.h) ;;
            *) echo "check-layers: $f: the engine may not include $h"; exit 1 ;;
        esac
    done || bad=1
done
for f in $(ls src/*.c gpu/*.c 2>/dev/null | grep -v 'src/main.c\|src/cli\|src/base.c'); do
    hits=$(grep -nE '^[^/*]*[^_a-z](printf|puts|exit|abort) *\(' "$f" | grep -vE 'snprintf|fprintf|vsnprintf|asprintf' | head -n 3)
    [ -n "$hits" ] && { echo "$hits" | sed "s|^|check-layers: $f: no stdout/exit in library code: |"; bad=1; }
done
[ "$bad" = 0 ] && echo "check-layers: ok"
exit $bad
