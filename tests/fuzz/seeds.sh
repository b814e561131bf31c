#!/usr/bin/env bash
# seeds.sh DIR — the seed corpora of the fuzz targets (tests/fuzz/fuzz_*.c) into DIR/NAME/.
# Each target's first byte, where it has one, picks what the rest is fed to (see its header).
# Files are small on purpose: libFuzzer mutates them up to -max_len (FUZZ_MAX_LEN) bytes.
set -eu
cd "$(dirname "$0")/../.."
out=$1
mkdir -p "$out"/import "$out"/safetensors "$out"/image "$out"/import_images
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# import: 0 prompts, 1 ratings, 2 generated, 3 pairs
for f in tests/fixtures/import/*.csv tests/fixtures/import/*.jsonl \
         tests/fixtures/import/bad/*.csv tests/fixtures/import/bad/*.jsonl; do
    [ -f "$f" ] || continue
    case $(basename "$f") in prompts*) k=0;; ratings*) k=1;; gen*) k=2;; *) k=3;; esac
    { printf "\\$k"; cat "$f"; } > "$out/import/$(basename "$f")"
done

# safetensors: the Python package's file, and small hand-made ones (zero-length tensors,
# half floats, metadata, gaps)
cp tests/fixtures/safetensors/*.safetensors "$out/safetensors/"
if command -v python3 >/dev/null; then
    python3 - "$out/safetensors" <<'PY'
import json, struct, sys
def save(name, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(f"{sys.argv[1]}/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
save("zero.safetensors", {"__metadata__": {"format": "pt"},
     "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [8, 8]},
     "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]}},
     struct.pack("<2f", 1.5, -2.0) + struct.pack("<4H", 0x3c00, 0x7c00, 0x7e00, 0x0001))
save("kinds.safetensors", {
     "u8": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
     "bf": {"dtype": "BF16", "shape": [1], "data_offsets": [4, 6]},
     "i64": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]},
     "f8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [16, 18]},
     "b": {"dtype": "BOOL", "shape": [2], "data_offsets": [18, 20]}},
     bytes(range(20)))
PY
fi

# images: the CLIP fixtures' small files, and one of each format stb_image reads, made with
# ImageMagick when it is there (palette, grey, alpha, 16-bit, interlaced, progressive)
imgs=(tests/fixtures/clip/images/pal_70x40.png tests/fixtures/clip/images/grey_45x60.png
      tests/fixtures/clip/images/rgb_50x37.png tests/fixtures/clip/images/photo_120x90.jpg
      tests/fixtures/clip/images/rgba_64x48.png tests/fixtures/import/images/1/0.png)
if command -v convert >/dev/null; then
    g="-size 13x7 gradient:red-blue"
    convert $g "$tmp/g.png" && convert $g "$tmp/g.jpg" && convert $g "$tmp/g.bmp" &&
    convert $g "$tmp/g.gif" && convert $g "$tmp/g.tga" && convert $g "$tmp/g.ppm" &&
    convert $g -colorspace Gray "$tmp/g.pgm" &&
    convert $g -interlace PNG "$tmp/i.png" && convert $g PNG8:"$tmp/p.png" &&
    convert $g -depth 16 PNG48:"$tmp/d.png" && convert $g -alpha set -channel A \
        -evaluate set 50% PNG32:"$tmp/a.png" && convert $g -colorspace Gray "$tmp/grey.png" &&
    convert $g -interlace JPEG "$tmp/prog.jpg" && convert $g -colorspace Gray "$tmp/grey.jpg" &&
    convert $g -sampling-factor 2x2 -quality 60 "$tmp/sub.jpg" || echo "seeds: convert failed"
    imgs+=("$tmp"/*.*)
fi
n=0
for f in "${imgs[@]}"; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    for k in 0 1 2; do { printf "\\$k"; cat "$f"; } > "$out/image/$k-$n-$(basename "$f")"; done
    case $f in *.png) k=0;; *.jpg) k=1;; *.bmp) k=2;; *) continue;; esac
    { printf "\\$k"; cat "$f"; } > "$out/import_images/$n-$(basename "$f")"
done
