/* fuzz_safetensors — libFuzzer target for the safetensors reader (`make fuzz`, needs clang).
 *
 * The input is the file. Invariants checked on every input:
 *   - no crash, leak or undefined behaviour (ASan + UBSan);
 *   - a refused file names itself in the message, with ERR_FORMAT or ERR_IO;
 *   - an accepted file keeps the header's promises: every tensor inside the mapping with
 *     n_bytes = n_elem * dtype size, no two tensors sharing a byte (checked here pairwise,
 *     independently of the reader's own check), every name found again by safetensors_find,
 *     and every tensor readable as f32.
 * Seeds: the safetensors fixtures and small hand-made files (tests/fuzz/seeds.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmt_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/easel-fuzz-st-%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    Err err = {0};
    SafeTensors *st = safetensors_open(path, &err);
    if (!st) {
        if ((err.code != ERR_FORMAT && err.code != ERR_IO) || !strstr(err.msg, path))
            __builtin_trap();
        unlink(path);
        return 0;
    }
    size_t n = safetensors_count(st);
    const uint8_t *lo = NULL, *hi = NULL;
    for (size_t i = 0; i < n; i++) {
        const StTensor *t = safetensors_at(st, i);
        if (t->n_bytes != (uint64_t)t->n_elem * safetensors_dtype_size(t->dtype))
            __builtin_trap();
        if (t->n_bytes > size || safetensors_find(st, t->name) != t)
            __builtin_trap();
        const uint8_t *b = t->data, *e = b + t->n_bytes;
        if (!lo || b < lo)
            lo = b;
        if (!hi || e > hi)
            hi = e;
        for (size_t j = 0; j < i && n <= 256; j++) {
            const StTensor *u = safetensors_at(st, j);
            const uint8_t *ub = u->data, *ue = ub + u->n_bytes;
            if (t->n_bytes && u->n_bytes && b < ue && ub < e)
                __builtin_trap(); /* overlap accepted */
        }
        float *out = malloc(t->n_elem ? (size_t)t->n_elem * sizeof(float) : 1);
        if (safetensors_read_f32(st, t, out, (size_t)t->n_elem, &err) != 0)
            __builtin_trap();
        free(out);
    }
    if (n && (size_t)(hi - lo) > size)
        __builtin_trap();
    for (size_t i = 0; safetensors_metadata_key(st, i); i++)
        if (!safetensors_metadata(st, safetensors_metadata_key(st, i)))
            __builtin_trap();
    safetensors_close(st);
    unlink(path);
    return 0;
}
