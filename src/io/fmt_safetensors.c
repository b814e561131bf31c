/* fmt_safetensors — safetensors reader (mmap + validated header) and atomic writer.
 * See fmt_safetensors.h for the format and the contract.
 *
 * Invariants after safetensors_open succeeds: every tensor's bytes lie inside the mapping,
 * no two tensors overlap, n_bytes == n_elem * dtype size, names are unique. So readers
 * never bounds-check again. `tensors` is sorted by offset; `by_name` indexes it by name.
 */
#include "fmt_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "base.h"

#define ST_MAX_HEADER (100u << 20) /* the Python package refuses larger headers too */

struct SafeTensors {
    char *path;
    void *map;            /* whole file, PROT_READ */
    size_t map_size;
    const uint8_t *data;  /* start of the data buffer */
    uint64_t data_len;
    StTensor *tensors;    /* n, by offset */
    size_t n;
    StTensor **by_name;   /* n pointers into tensors, sorted by name */
    char **names;         /* owned tensor names */
    char **meta_keys;     /* n_meta, in file order */
    char **meta_vals;
    size_t n_meta;
};

/* ---- dtypes -------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},         [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},         [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *safetensors_dtype_name(StDtype dt) {
    ASSERT((unsigned)dt < ST_N_DTYPES);
    return dtypes[dt].name;
}

size_t safetensors_dtype_size(StDtype dt) {
    ASSERT((unsigned)dt < ST_N_DTYPES);
    return dtypes[dt].size;
}

int safetensors_dtype_parse(const char *name) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float safetensors_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = ldexpf((float)man, -24);
        return bits_to_f32(f32_to_bits(v) | sign);
    }
    if (exp == 31) /* inf or nan, payload kept */
        return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

float safetensors_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t safetensors_f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep it a (quiet) nan */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t safetensors_f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* nan */
        return sign | 0x7e00;
    if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
        /* value = a_float; half subnormal unit is 2^-24; round to nearest even */
        float v = bits_to_f32(a);
        float q = ldexpf(v, 24);           /* exact: scaling by a power of two */
        float r = nearbyintf(q);           /* default rounding mode: nearest even */
        return sign | (uint16_t)r;
    }
    uint32_t exp = (a >> 23) - 112;
    uint32_t man = a & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++; /* carries into the exponent correctly, up to inf */
    return sign | (uint16_t)h;
}

static float f8e5m2_to_f32(uint8_t b) { return safetensors_f16_to_f32((uint16_t)(b << 8)); }

static float f8e4m3_to_f32(uint8_t b) {
    float s = (b & 0x80) ? -1.0f : 1.0f;
    int e = (b >> 3) & 0xf, m = b & 7;
    if (e == 15 && m == 7)
        return NAN;
    if (e == 0)
        return s * ldexpf((float)m, -9);
    return s * ldexpf(1.0f + (float)m / 8.0f, e - 7);
}

/* ---- reading ------------------------------------------------------------------------------- */

static int cmp_offset(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(StTensor *const *)a)->name, (*(StTensor *const *)b)->name);
}

/* Parse one tensor entry into T (name already set). Returns 0 or sets err. */
static int parse_entry(const char *path, const char *name, json_t *v, StTensor *t, Err *err) {
    if (!json_is_object(v))
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path,
                       name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return err_set(err, ERR_FORMAT,
                       "%s: tensor '%s': needs \"dtype\" (string), \"shape\" and "
                       "\"data_offsets\" (arrays)", path, name);
    int dt = safetensors_dtype_parse(json_string_value(jd));
    if (dt < 0)
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, name,
                       json_string_value(jd));
    t->dtype = (StDtype)dt;
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                       name, nd, ST_MAX_DIMS);
    t->n_dim = (int)nd;
    uint64_t n_elem = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return err_set(err, ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", path,
                           name, i);
        t->shape[i] = json_integer_value(d);
        if (t->shape[i] != 0 && n_elem > UINT64_MAX / (uint64_t)t->shape[i])
            overflow = 1;
        else
            n_elem *= (uint64_t)t->shape[i];
    }
    if (overflow || n_elem > (uint64_t)INT64_MAX / 8)
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': shape is impossibly large", path,
                       name);
    t->n_elem = (int64_t)n_elem;
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]",
                       path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return err_set(err, ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] invalid",
                       path, name, (long long)b, (long long)e);
    t->offset = (uint64_t)b;
    t->n_bytes = (uint64_t)(e - b);
    uint64_t want = n_elem * dtypes[dt].size;
    if (t->n_bytes != want)
        return err_set(err, ERR_FORMAT,
                       "%s: tensor '%s': %llu bytes in data_offsets but shape and %s need "
                       "%llu", path, name, (unsigned long long)t->n_bytes, dtypes[dt].name,
                       (unsigned long long)want);
    return 0;
}

static int parse_header(SafeTensors *st, const char *hdr, size_t len, Err *err) {
    const char *path = st->path;
    json_error_t je;
    json_t *root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return err_set(err, ERR_FORMAT,
                       "%s: not a safetensors file: header JSON invalid at byte %d (%s)", path,
                       je.position, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = err_set(err, ERR_FORMAT, "%s: not a safetensors file: header is not an object",
                     path);
        goto out_root;
    }
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        n--;
        if (!json_is_object(meta)) {
            rc = err_set(err, ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
            goto out_root;
        }
        size_t nm = json_object_size(meta);
        st->meta_keys = xcalloc(nm + 1, sizeof(char *));
        st->meta_vals = xcalloc(nm + 1, sizeof(char *));
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                rc = err_set(err, ERR_FORMAT, "%s: __metadata__ \"%s\" is not a string", path,
                             k);
                goto out_root;
            }
            st->meta_keys[st->n_meta] = xstrdup(k);
            st->meta_vals[st->n_meta] = xstrdup(json_string_value(v));
            st->n_meta++;
        }
    }
    st->tensors = xcalloc(n ? n : 1, sizeof(StTensor));
    st->names = xcalloc(n ? n : 1, sizeof(char *));
    st->by_name = xcalloc(n ? n : 1, sizeof(StTensor *));
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0)
            continue;
        StTensor *t = &st->tensors[st->n];
        st->names[st->n] = xstrdup(k);
        t->name = st->names[st->n];
        st->n++;
        if ((rc = parse_entry(path, k, v, t, err)) != 0)
            goto out_root;
        if (t->offset > st->data_len || t->n_bytes > st->data_len - t->offset) {
            rc = err_set(err, ERR_FORMAT,
                         "%s: truncated: tensor '%s' needs data bytes %llu..%llu but the file "
                         "holds %llu (re-download or re-save it)", path, k,
                         (unsigned long long)t->offset,
                         (unsigned long long)(t->offset + t->n_bytes),
                         (unsigned long long)st->data_len);
            goto out_root;
        }
    }
    /* Overlaps: by start, each tensor against the one reaching furthest so far, so no
     * extent hides behind another (a zero-length tensor, or a short one inside a long one).
     * Zero-length tensors hold no bytes: bounds-checked above, out of the chain. */
    qsort(st->tensors, st->n, sizeof(StTensor), cmp_offset);
    const StTensor *reach = NULL;
    for (size_t i = 0; i < st->n; i++) {
        StTensor *t = &st->tensors[i];
        t->data = st->data + t->offset;
        st->by_name[i] = t;
        if (t->n_bytes == 0)
            continue;
        if (reach && t->offset < reach->offset + reach->n_bytes) {
            rc = err_set(err, ERR_FORMAT,
                         "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) "
                         "overlap in the data: the file is corrupt or crafted", path,
                         reach->name, (unsigned long long)reach->offset,
                         (unsigned long long)(reach->offset + reach->n_bytes), t->name,
                         (unsigned long long)t->offset,
                         (unsigned long long)(t->offset + t->n_bytes));
            goto out_root;
        }
        if (!reach || t->offset + t->n_bytes > reach->offset + reach->n_bytes)
            reach = t;
    }
    qsort(st->by_name, st->n, sizeof(StTensor *), cmp_by_name);
out_root:
    json_decref(root);
    return rc;
}

SafeTensors *safetensors_open(const char *path, Err *err) {
    /* O_NONBLOCK: a FIFO without a writer must be refused (below), not wait forever. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        err_set(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s", path,
                strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        err_set(err, ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        err_set(err, ERR_FORMAT, "%s: not a safetensors file: only %zu bytes", path, size);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        err_set(err, map_errno == ENOMEM ? ERR_NOMEM : ERR_IO, "%s: cannot map: %s", path,
                strerror(map_errno));
        return NULL;
    }
    SafeTensors *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    st->map = map;
    st->map_size = size;
    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > size - 8) {
        err_set(err, ERR_FORMAT,
                hlen > ST_MAX_HEADER
                    ? "%s: not a safetensors file (header length %llu is implausible)"
                    : "%s: truncated: header of %llu bytes does not fit in the file",
                path, (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        err_set(err, ERR_FORMAT, "%s: header of %llu bytes is larger than the 100 MB limit",
                path, (unsigned long long)hlen);
        goto fail;
    }
    if (hlen < 2 || p[8] != '{') {
        err_set(err, ERR_FORMAT, "%s: not a safetensors file (header does not start with '{')",
                path);
        goto fail;
    }
    st->data = p + 8 + hlen;
    st->data_len = size - 8 - hlen;
    if (parse_header(st, (const char *)p + 8, (size_t)hlen, err) != 0)
        goto fail;
    return st;
fail:
    safetensors_close(st);
    return NULL;
}

void safetensors_close(SafeTensors *st) {
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_size);
    for (size_t i = 0; i < st->n; i++)
        free(st->names[i]);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->names);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->path);
    free(st);
}

const char *safetensors_path(const SafeTensors *st) { return st->path; }
size_t safetensors_count(const SafeTensors *st) { return st->n; }

const StTensor *safetensors_at(const SafeTensors *st, size_t i) {
    return i < st->n ? &st->tensors[i] : NULL;
}

const StTensor *safetensors_find(const SafeTensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const StTensor *t = st->by_name[mid];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *safetensors_metadata(const SafeTensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_vals[i];
    return NULL;
}

const char *safetensors_metadata_key(const SafeTensors *st, size_t i) {
    return i < st->n_meta ? st->meta_keys[i] : NULL;
}

const float *safetensors_f32_view(const StTensor *t) {
    if (t->dtype != ST_F32 || ((uintptr_t)t->data & 3) != 0)
        return NULL;
    return (const float *)t->data;
}

/* Little-endian loads at any alignment (the host is little-endian: x86-64, aarch64). */
#define DEF_LOAD(name, type)                                                                 \
    static inline type name(const uint8_t *p, size_t i) {                                  \
        type v;                                                                            \
        memcpy(&v, p + i * sizeof(type), sizeof(type));                                    \
        return v;                                                                          \
    }
DEF_LOAD(load_u16, uint16_t)
DEF_LOAD(load_i16, int16_t)
DEF_LOAD(load_u32, uint32_t)
DEF_LOAD(load_i32, int32_t)
DEF_LOAD(load_u64, uint64_t)
DEF_LOAD(load_i64, int64_t)
DEF_LOAD(load_f64, double)

/* All 65536 halves as floats (256 KiB), built once: converting a half checkpoint is then a
 * table lookup per element. */
static float f16_lut[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_build(void) {
    for (uint32_t h = 0; h < 65536; h++)
        f16_lut[h] = safetensors_f16_to_f32((uint16_t)h);
}

static const float *f16_table(void) {
    pthread_once(&f16_once, f16_build);
    return f16_lut;
}

/* Element I of the DTYPE data D as a float (any dtype but the three read_f32 loops over). */
static float elem_to_f32(const uint8_t *d, StDtype dtype, size_t i) {
    switch (dtype) {
    case ST_F64:
        return (float)load_f64(d, i);
    case ST_F8_E5M2:
        return f8e5m2_to_f32(d[i]);
    case ST_F8_E4M3:
        return f8e4m3_to_f32(d[i]);
    case ST_BOOL:
        return d[i] ? 1.0f : 0.0f;
    case ST_U8:
        return (float)d[i];
    case ST_I8:
        return (float)(int8_t)d[i];
    case ST_I16:
        return (float)load_i16(d, i);
    case ST_U16:
        return (float)load_u16(d, i);
    case ST_I32:
        return (float)load_i32(d, i);
    case ST_U32:
        return (float)load_u32(d, i);
    case ST_I64:
        return (float)load_i64(d, i);
    case ST_U64:
        return (float)load_u64(d, i);
    default:
        ASSERT(0);
        return 0;
    }
}

/* Elements [FIRST, FIRST + N) of the DTYPE data D as floats into OUT. */
static void convert_f32(const uint8_t *d, StDtype dtype, size_t first, size_t n, float *out) {
    switch (dtype) {
    case ST_F32:
        memcpy(out, d + first * 4, n * 4);
        break;
    case ST_F16: {
        const float *lut = f16_table();
        for (size_t i = 0; i < n; i++)
            out[i] = lut[load_u16(d, first + i)];
        break;
    }
    case ST_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = safetensors_bf16_to_f32(load_u16(d, first + i));
        break;
    default: /* the rarer dtypes, an element at a time */
        for (size_t i = 0; i < n; i++)
            out[i] = elem_to_f32(d, dtype, first + i);
        break;
    }
}

int safetensors_read_f32(const SafeTensors *st, const StTensor *t, float *out, size_t n,
                         Err *err) {
    if ((int64_t)n != t->n_elem)
        return err_set(err, ERR_USAGE, "%s: tensor '%s' has %lld elements, caller expects %zu",
                       st->path, t->name, (long long)t->n_elem, n);
    convert_f32(t->data, t->dtype, 0, n, out);
    return 0;
}

/* mem15: bounded reads and releasing what was read (sd_weights' loader). */
int safetensors_read_f32_range(const SafeTensors *st, const StTensor *t, size_t first,
                               size_t n, float *out, Err *err) {
    if (first > (size_t)t->n_elem || n > (size_t)t->n_elem - first)
        return err_set(err, ERR_USAGE, "%s: tensor '%s' has %lld elements, caller reads %zu "
                       "from %zu", st->path, t->name, (long long)t->n_elem, n, first);
    convert_f32(t->data, t->dtype, first, n, out);
    return 0;
}

void safetensors_release(const SafeTensors *st, const StTensor *t, size_t first, size_t n) {
    size_t es = safetensors_dtype_size(t->dtype);
    if (!st->map || !n || first >= (size_t)t->n_elem)
        return;
    if (n > (size_t)t->n_elem - first)
        n = (size_t)t->n_elem - first;
    const uint8_t *lo = (const uint8_t *)t->data + first * es, *hi = lo + n * es;
    const uint8_t *base = st->map, *end = base + st->map_size;
    if (lo < base || hi > end) /* not in this file's mapping */
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)lo & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)hi + page - 1) & ~(uintptr_t)(page - 1);
    /* A read-only private file mapping has no dirty pages: dropping them loses nothing, a
     * later access maps them again from the page cache. (B past the file's end stays inside
     * the mapping's last page.) */
    (void)madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct WEntry {
    char *name;
    StDtype dtype;
    int n_dim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    uint64_t n_bytes;
} WEntry;

struct SafeTensorsWriter {
    WEntry *e;
    size_t n, cap;
    char **mk, **mv;
    size_t n_meta, cap_meta;
};

SafeTensorsWriter *safetensors_writer_new(void) { return xcalloc(1, sizeof(SafeTensorsWriter)); }

void safetensors_writer_free(SafeTensorsWriter *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->e);
    free(w->mk);
    free(w->mv);
    free(w);
}

int safetensors_writer_add(SafeTensorsWriter *w, const char *name, StDtype dt, int n_dim,
                           const int64_t *shape, const void *data, Err *err) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return err_set(err, ERR_USAGE, "safetensors: invalid tensor name '%s'",
                       name ? name : "(null)");
    if ((unsigned)dt >= ST_N_DTYPES || n_dim < 0 || n_dim > ST_MAX_DIMS)
        return err_set(err, ERR_USAGE, "safetensors: tensor '%s': bad dtype or rank", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return err_set(err, ERR_CONFLICT, "safetensors: tensor '%s' added twice", name);
    uint64_t n = 1;
    for (int i = 0; i < n_dim; i++) {
        if (shape[i] < 0)
            return err_set(err, ERR_USAGE, "safetensors: tensor '%s': negative shape", name);
        n *= (uint64_t)shape[i];
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->e = xrealloc(w->e, w->cap * sizeof(WEntry));
    }
    WEntry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dt;
    e->n_dim = n_dim;
    for (int i = 0; i < n_dim; i++)
        e->shape[i] = shape[i];
    e->data = data;
    e->n_bytes = n * dtypes[dt].size;
    return 0;
}

void safetensors_writer_meta(SafeTensorsWriter *w, const char *key, const char *value) {
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->mk[i], key) == 0) {
            free(w->mv[i]);
            w->mv[i] = xstrdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->mk = xrealloc(w->mk, w->cap_meta * sizeof(char *));
        w->mv = xrealloc(w->mv, w->cap_meta * sizeof(char *));
    }
    w->mk[w->n_meta] = xstrdup(key);
    w->mv[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

/* The Python package's order: dtype rank descending, then name ascending. */
static int cmp_wentry(const void *a, const void *b) {
    const WEntry *x = *(WEntry *const *)a, *y = *(WEntry *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static char *build_header(SafeTensorsWriter *w, WEntry **order, size_t *len_out) {
    json_t *root = json_object();
    if (w->n_meta > 0) {
        json_t *meta = json_object();
        for (size_t i = 0; i < w->n_meta; i++)
            json_object_set_new(meta, w->mk[i], json_string(w->mv[i]));
        json_object_set_new(root, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const WEntry *e = order[i];
        json_t *t = json_object();
        json_object_set_new(t, "dtype", json_string(dtypes[e->dtype].name));
        json_t *shape = json_array();
        for (int d = 0; d < e->n_dim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(t, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + e->n_bytes)));
        json_object_set_new(t, "data_offsets", offs);
        json_object_set_new(root, e->name, t);
        off += e->n_bytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    ASSERT(s);
    size_t n = strlen(s);
    size_t padded = (n + 7) / 8 * 8;
    char *out = xmalloc(padded + 1);
    memcpy(out, s, n);
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    free(s);
    *len_out = padded;
    return out;
}

int safetensors_writer_save(SafeTensorsWriter *w, const char *path, Err *err) {
    WEntry **order = xmalloc((w->n ? w->n : 1) * sizeof(WEntry *));
    for (size_t i = 0; i < w->n; i++)
        order[i] = &w->e[i];
    qsort(order, w->n, sizeof(WEntry *), cmp_wentry);
    size_t hlen;
    char *hdr = build_header(w, order, &hlen);
    int rc = 0;
    AtomicFile *af;
    if ((rc = atomic_file_open(path, &af, err)))
        goto out_free;
    FILE *f = atomic_file_stream(af);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen;
    for (size_t i = 0; !bad && i < w->n; i++)
        bad = fwrite(order[i]->data, 1, order[i]->n_bytes, f) != order[i]->n_bytes;
    if (bad) {
        rc = err_set(err, ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
        atomic_file_abort(af);
        goto out_free;
    }
    rc = atomic_file_commit(af, err);
out_free:
    free(hdr);
    free(order);
    return rc;
}
