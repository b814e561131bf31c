/* clip_tokenizer — byte-level BPE as OpenCLIP's SimpleTokenizer. See clip_tokenizer.h.
 *
 * Text is worked on as arrays of code points (U32Buf). Vocabulary strings live in one
 * arena; a string -> id hash and a (left id, right id) -> (rank, merged id) hash drive BPE
 * entirely on integer ids. Both hashes use open addressing and are built once; encoding
 * only reads them, so one tokenizer serves all threads.
 */
#include "clip_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base.h"
#include "clip_unicode_data.h"

#define N_MERGES (49152 - 256 - 2) /* the reference reads this many merge lines */

/* ---- code point buffers ------------------------------------------------------------------- */

typedef struct U32Buf {
    uint32_t *v;
    size_t n, cap;
} U32Buf;

static void ub_push(U32Buf *b, uint32_t c) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->v = xrealloc(b->v, b->cap * sizeof(uint32_t));
    }
    b->v[b->n++] = c;
}

/* Decode one UTF-8 sequence at s (len bytes left); invalid -> U+FFFD, 1 byte. */
static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *adv) {
    unsigned c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return c;
    }
    int n = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
    if (c >= 0xf5)
        n = -1;
    if (n < 0 || (size_t)n >= len)
        goto bad;
    uint32_t cp = c & (0x3f >> n);
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        goto bad;
    *adv = (size_t)n + 1;
    return cp;
bad:
    *adv = 1;
    return 0xfffd;
}

static void ub_push_utf8(U32Buf *b, const char *s) {
    size_t len = strlen(s);
    const unsigned char *p = (const unsigned char *)s;
    while (len > 0) {
        size_t adv;
        ub_push(b, utf8_next(p, len, &adv));
        p += adv;
        len -= adv;
    }
}

static size_t utf8_put(char *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

static char *ub_to_utf8(const uint32_t *v, size_t n) {
    char *s = xmalloc(4 * n + 1), *p = s;
    for (size_t i = 0; i < n; i++)
        p += utf8_put(p, v[i]);
    *p = '\0';
    return s;
}

/* ---- character tables ---------------------------------------------------------------------- */

static int cls_of(uint32_t c) {
    size_t lo = 0, hi = ARRAY_LEN(uc_class);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < uc_class[mid].lo)
            hi = mid;
        else if (c > uc_class[mid].hi)
            lo = mid + 1;
        else
            return uc_class[mid].cls;
    }
    return 0;
}

static int in_ranges(const UcRange *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int is_cased(uint32_t c) { return in_ranges(uc_cased, ARRAY_LEN(uc_cased), c); }
static int is_case_ignorable(uint32_t c) {
    return in_ranges(uc_case_ignorable, ARRAY_LEN(uc_case_ignorable), c);
}

static int in_sorted(const uint32_t *set, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (set[mid] == c)
            return 1;
        if (set[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static const char *map_find(const UcMap *m, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m[mid].cp == c)
            return m[mid].to;
        if (m[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int py_isspace(uint32_t c) { return in_sorted(uc_isspace, ARRAY_LEN(uc_isspace), c); }

/* Entity NAME (UTF-8, as in the table: "amp;" or "&AACUTE;") in T of N entries. */
static const char *entity_find(const UcEntity *t, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(t[mid].name, name);
        if (c == 0)
            return t[mid].to;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_alnum_ascii(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Python's html._replace_charref for a numeric reference with value NUM (capped). */
static void numeric_ref(U32Buf *out, unsigned long long num) {
    const char *r = num <= 0x10ffff ? map_find(uc_invalid_charrefs, ARRAY_LEN(uc_invalid_charrefs),
                                               (uint32_t)num)
                                    : NULL;
    if (r) {
        ub_push_utf8(out, r);
        return;
    }
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) {
        ub_push(out, 0xfffd);
        return;
    }
    if (in_sorted(uc_invalid_codepoints, ARRAY_LEN(uc_invalid_codepoints), (uint32_t)num))
        return;
    ub_push(out, (uint32_t)num);
}

/* Parse digits of base BASE from v[i..end); returns the value capped above 0x10ffff. */
static unsigned long long parse_num(const uint32_t *v, size_t i, size_t end, int base) {
    unsigned long long n = 0;
    for (; i < end; i++) {
        uint32_t c = v[i];
        int d = c <= '9' ? (int)c - '0' : (int)(c | 0x20) - 'a' + 10;
        n = n * (unsigned)base + (unsigned)d;
        if (n > 0x110000)
            n = 0x110000;
    }
    return n;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint32_t c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* Python's html.unescape. */
static void html_unescape(U32Buf *out, const uint32_t *v, size_t n) {
    for (size_t i = 0; i < n;) {
        if (v[i] != '&' || i + 1 >= n) {
            ub_push(out, v[i++]);
            continue;
        }
        size_t j = i + 1;
        if (v[j] == '#') {
            int hex = j + 1 < n && (v[j + 1] == 'x' || v[j + 1] == 'X');
            size_t d0 = j + 1 + (size_t)hex, d = d0;
            while (d < n && (hex ? is_hex(v[d]) : is_digit(v[d])))
                d++;
            if (d == d0) { /* "&#" not followed by digits: no match at this '&' */
                ub_push(out, v[i++]);
                continue;
            }
            numeric_ref(out, parse_num(v, d0, d, hex ? 16 : 10));
            i = d < n && v[d] == ';' ? d + 1 : d;
            continue;
        }
        /* named: [^\t\n\f <&#;]{1,32};? */
        size_t k = j;
        while (k < n && k - j < 32 && v[k] != '\t' && v[k] != '\n' && v[k] != '\f' &&
               v[k] != ' ' && v[k] != '<' && v[k] != '&' && v[k] != '#' && v[k] != ';')
            k++;
        if (k == j) {
            ub_push(out, v[i++]);
            continue;
        }
        size_t end = k < n && v[k] == ';' ? k + 1 : k; /* s = v[j..end) */
        char *s = ub_to_utf8(v + j, end - j);
        const char *r = entity_find(uc_entities, ARRAY_LEN(uc_entities), s);
        if (r) {
            ub_push_utf8(out, r);
        } else {
            /* the longest prefix (at least 2 characters) that is a name */
            size_t x;
            for (x = end - j - 1; x > 1; x--) {
                char *pre = ub_to_utf8(v + j, x);
                r = entity_find(uc_entities, ARRAY_LEN(uc_entities), pre);
                free(pre);
                if (r)
                    break;
            }
            if (r) {
                ub_push_utf8(out, r);
                for (size_t q = j + x; q < end; q++)
                    ub_push(out, v[q]);
            } else {
                ub_push(out, '&');
                for (size_t q = j; q < end; q++)
                    ub_push(out, v[q]);
            }
        }
        free(s);
        i = end;
    }
}

/* ftfy.fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; from its table, or numeric references. */
static void ftfy_unescape(U32Buf *out, const uint32_t *v, size_t n) {
    for (size_t i = 0; i < n;) {
        if (v[i] == '&') {
            size_t j = i + 1;
            if (j < n && v[j] == '#')
                j++;
            size_t k = j;
            while (k < n && k - j < 24 && is_alnum_ascii(v[k]))
                k++;
            if (k > j && k < n && v[k] == ';') {
                char *s = ub_to_utf8(v + i, k + 1 - i); /* "&name;" */
                const char *r = entity_find(uc_entities, ARRAY_LEN(uc_entities), s + 1);
                if (!r)
                    r = entity_find(uc_ftfy_entities, ARRAY_LEN(uc_ftfy_entities), s);
                free(s);
                if (r) {
                    ub_push_utf8(out, r);
                    i = k + 1;
                    continue;
                }
                if (v[i + 1] == '#') {
                    U32Buf tmp = {0};
                    html_unescape(&tmp, v + i, k + 1 - i);
                    int has_semi = 0;
                    for (size_t q = 0; q < tmp.n; q++)
                        has_semi |= tmp.v[q] == ';';
                    if (!has_semi) {
                        for (size_t q = 0; q < tmp.n; q++)
                            ub_push(out, tmp.v[q]);
                        free(tmp.v);
                        i = k + 1;
                        continue;
                    }
                    free(tmp.v);
                }
            }
        }
        ub_push(out, v[i++]);
    }
}

/* One round of ftfy's fixers after unescaping (encoding repair and NFC excepted). */
static void ftfy_round(U32Buf *out, const uint32_t *v, size_t n) {
    U32Buf a = {0}, b = {0};
    /* fix_c1_controls, fix_latin_ligatures, fix_character_width: per character */
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c >= 0x80 && c < 0xa0)
            ub_push_utf8(&a, uc_c1[c - 0x80]);
        else
            ub_push(&a, c);
    }
    for (size_t i = 0; i < a.n; i++) {
        const char *r = map_find(uc_ligatures, ARRAY_LEN(uc_ligatures), a.v[i]);
        if (r)
            ub_push_utf8(&b, r);
        else
            ub_push(&b, a.v[i]);
    }
    a.n = 0;
    for (size_t i = 0; i < b.n; i++) {
        const char *r = map_find(uc_width, ARRAY_LEN(uc_width), b.v[i]);
        if (r)
            ub_push_utf8(&a, r);
        else
            ub_push(&a, b.v[i]);
    }
    /* uncurl_quotes, fix_line_breaks */
    b.n = 0;
    for (size_t i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (c == 0x2bc || (c >= 0x2018 && c <= 0x201b))
            c = '\'';
        else if (c >= 0x201c && c <= 0x201f)
            c = '"';
        if (c == '\r' && i + 1 < a.n && a.v[i + 1] == '\n')
            continue; /* \r\n -> \n */
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        ub_push(&b, c);
    }
    /* remove_terminal_escapes: \033\[[0-9;]*[a-zA-Z]; remove_control_chars */
    for (size_t i = 0; i < b.n; i++) {
        uint32_t c = b.v[i];
        if (c == 0x1b && i + 1 < b.n && b.v[i + 1] == '[') {
            size_t k = i + 2;
            while (k < b.n && (is_digit(b.v[k]) || b.v[k] == ';'))
                k++;
            if (k < b.n && ((b.v[k] | 0x20) >= 'a' && (b.v[k] | 0x20) <= 'z')) {
                i = k;
                continue;
            }
        }
        if (in_sorted(uc_control, ARRAY_LEN(uc_control), c))
            continue;
        ub_push(out, c);
    }
    free(a.v);
    free(b.v);
}

/* ftfy.fix_text, the parts named in the header, on V; result in OUT. */
static void ftfy_fix(U32Buf *out, const uint32_t *v, size_t n) {
    int unescape = 1;
    for (size_t pos = 0; pos < n;) {
        size_t end = pos;
        while (end < n && v[end] != '\n')
            end++;
        if (end < n)
            end++; /* the segment keeps its newline */
        for (size_t i = pos; i < end && unescape; i++)
            if (v[i] == '<')
                unescape = 0; /* sticks for the rest of the text, as in ftfy */
        U32Buf cur = {0};
        for (size_t i = pos; i < end; i++)
            ub_push(&cur, v[i]);
        for (int round = 0; round < 64; round++) {
            U32Buf a = {0}, b = {0};
            if (unescape)
                ftfy_unescape(&a, cur.v, cur.n);
            else
                for (size_t i = 0; i < cur.n; i++)
                    ub_push(&a, cur.v[i]);
            ftfy_round(&b, a.v, a.n);
            free(a.v);
            int same = b.n == cur.n && (b.n == 0 || memcmp(b.v, cur.v, b.n * 4) == 0);
            free(cur.v);
            cur = b;
            if (same)
                break;
        }
        for (size_t i = 0; i < cur.n; i++)
            ub_push(out, cur.v[i]);
        free(cur.v);
        pos = end;
    }
}

/* Steps 1-3 of the header on TEXT, as code points; HF: without step 1 (transformers'
 * CLIPTokenizer). */
static void clean_text(U32Buf *out, const char *text, int hf) {
    U32Buf in = {0}, a = {0}, b = {0};
    ub_push_utf8(&in, text);
    if (hf) {
        for (size_t i = 0; i < in.n; i++)
            ub_push(&a, in.v[i]);
    } else {
        ftfy_fix(&a, in.v, in.n);
        html_unescape(&b, a.v, a.n);
        a.n = 0;
        html_unescape(&a, b.v, b.n);
    }
    /* strip, then " ".join(split()) */
    b.n = 0;
    int pending_space = 0, any = 0;
    for (size_t i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (py_isspace(c)) {
            pending_space = any;
            continue;
        }
        if (pending_space)
            ub_push(&b, ' ');
        pending_space = 0;
        any = 1;
        ub_push(&b, c);
    }
    /* str.lower(), with its final-sigma rule */
    for (size_t i = 0; i < b.n; i++) {
        uint32_t c = b.v[i];
        if (c == 0x3a3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(b.v[j - 1]))
                j--;
            int fin = j > 0 && is_cased(b.v[j - 1]);
            if (fin) {
                size_t k = i + 1;
                while (k < b.n && is_case_ignorable(b.v[k]))
                    k++;
                fin = k == b.n || !is_cased(b.v[k]);
            }
            ub_push(out, fin ? 0x3c2 : 0x3c3);
            continue;
        }
        const char *lo = map_find(uc_lower, ARRAY_LEN(uc_lower), c);
        if (lo)
            ub_push_utf8(out, lo);
        else
            ub_push(out, c);
    }
    free(in.v);
    free(a.v);
    free(b.v);
}

char *clip_text_clean(const char *text) {
    U32Buf v = {0};
    clean_text(&v, text, 0);
    char *s = ub_to_utf8(v.v, v.n);
    free(v.v);
    return s;
}

/* ---- vocabulary ---------------------------------------------------------------------------- */

typedef struct StrSlot {
    const char *s; /* NULL = empty */
    int32_t id;
} StrSlot;

typedef struct PairSlot {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    int32_t rank;
    int32_t merged;
} PairSlot;

struct ClipTokenizer {
    char **strs;        /* owned vocabulary strings, n_strs */
    size_t n_strs, cap_strs;
    StrSlot *vocab;     /* string -> id, cap_vocab slots (power of two) */
    size_t cap_vocab;
    PairSlot *pairs;    /* (a, b) -> rank, merged id */
    size_t cap_pairs;
    int32_t byte_id[256];
    int32_t byte_eow_id[256];
    int32_t sot, eot, vocab_size;
    int hf_clean;       /* clip_tokenizer_set_hf_clean */
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Insert or overwrite (later entries win, as Python's dict(zip(...)) does). */
static void vocab_put(ClipTokenizer *t, const char *s, int32_t id) {
    size_t m = t->cap_vocab - 1;
    for (size_t i = hash_str(s) & m;; i = (i + 1) & m) {
        if (!t->vocab[i].s) {
            if (t->n_strs == t->cap_strs) {
                t->cap_strs = t->cap_strs ? 2 * t->cap_strs : 1024;
                t->strs = xrealloc(t->strs, t->cap_strs * sizeof(char *));
            }
            t->strs[t->n_strs++] = xstrdup(s);
            t->vocab[i].s = t->strs[t->n_strs - 1];
            t->vocab[i].id = id;
            return;
        }
        if (strcmp(t->vocab[i].s, s) == 0) {
            t->vocab[i].id = id;
            return;
        }
    }
}

static int32_t vocab_get(const ClipTokenizer *t, const char *s) {
    size_t m = t->cap_vocab - 1;
    for (size_t i = hash_str(s) & m; t->vocab[i].s; i = (i + 1) & m)
        if (strcmp(t->vocab[i].s, s) == 0)
            return t->vocab[i].id;
    return -1;
}

static void pair_put(ClipTokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t m = t->cap_pairs - 1;
    for (size_t i = hash_u64(key) & m;; i = (i + 1) & m) {
        if (t->pairs[i].key == 0 || t->pairs[i].key == key) {
            t->pairs[i].key = key;
            t->pairs[i].rank = rank;
            t->pairs[i].merged = merged;
            return;
        }
    }
}

static const PairSlot *pair_get(const ClipTokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t m = t->cap_pairs - 1;
    for (size_t i = hash_u64(key) & m; t->pairs[i].key; i = (i + 1) & m)
        if (t->pairs[i].key == key)
            return &t->pairs[i];
    return NULL;
}

/* GPT-2's reversible byte -> printable character map. */
static void bytes_to_unicode(uint32_t map[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* The byte characters in the reference's vocabulary order (printable ranges first). */
static int bytes_in_vocab_order(int order[256]) {
    int n = 0;
    for (int b = '!'; b <= '~'; b++)
        order[n++] = b;
    for (int b = 0xa1; b <= 0xac; b++)
        order[n++] = b;
    for (int b = 0xae; b <= 0xff; b++)
        order[n++] = b;
    for (int b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae))
            order[n++] = b;
    return n;
}

static ClipTokenizer *tok_new(void) {
    ClipTokenizer *t = xcalloc(1, sizeof *t);
    t->cap_vocab = 1 << 17;
    t->vocab = xcalloc(t->cap_vocab, sizeof(StrSlot));
    t->cap_pairs = 1 << 17;
    t->pairs = xcalloc(t->cap_pairs, sizeof(PairSlot));
    return t;
}

void clip_tokenizer_free(ClipTokenizer *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n_strs; i++)
        free(t->strs[i]);
    free(t->strs);
    free(t->vocab);
    free(t->pairs);
    free(t);
}

/* Byte ids, merge table from the merge lines; vocab must be filled. */
static int tok_finish(ClipTokenizer *t, char **lines, size_t n_lines, const char *vocab_path,
                      const char *path, Err *err) {
    uint32_t map[256];
    bytes_to_unicode(map);
    for (int b = 0; b < 256; b++) {
        char s[16];
        size_t k = utf8_put(s, map[b]);
        s[k] = '\0';
        t->byte_id[b] = vocab_get(t, s);
        memcpy(s + k, "</w>", 5);
        t->byte_eow_id[b] = vocab_get(t, s);
        if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0)
            return err_set(err, ERR_FORMAT, "%s: the vocabulary lacks the byte symbol for 0x%02x",
                           vocab_path, b);
    }
    for (size_t i = 0; i < n_lines; i++) {
        char *a = lines[i], *sp;
        while (*a == ' ' || *a == '\t' || *a == '\r')
            a++;
        sp = a;
        while (*sp && *sp != ' ' && *sp != '\t')
            sp++;
        char *b = sp;
        while (*b == ' ' || *b == '\t')
            b++;
        char *be = b;
        while (*be && *be != ' ' && *be != '\t' && *be != '\r')
            be++;
        if (sp == a || be == b)
            return err_set(err, ERR_FORMAT, "%s:%zu: a merge line needs two symbols", path,
                           i + 2);
        char *l = xstrndup(a, (size_t)(sp - a)), *r = xstrndup(b, (size_t)(be - b));
        char *joined = xasprintf("%s%s", l, r);
        int32_t ia = vocab_get(t, l), ib = vocab_get(t, r), im = vocab_get(t, joined);
        free(l);
        free(r);
        free(joined);
        if (ia < 0 || ib < 0 || im < 0)
            return err_set(err, ERR_FORMAT, "%s:%zu: merge '%s' uses symbols not in the "
                           "vocabulary", path, i + 2, lines[i]);
        pair_put(t, ia, ib, (int32_t)i, im);
    }
    return 0;
}

/* Split BUF into lines in place; returns them (caller frees the array). */
static char **split_lines(char *buf, size_t *n_out) {
    size_t cap = 1024, n = 0;
    char **v = xmalloc(cap * sizeof(char *));
    for (char *p = buf; p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (n == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof(char *));
        }
        v[n++] = p;
        p = nl ? nl + 1 : NULL;
    }
    *n_out = n;
    return v;
}

/* Whole file (gunzipped if it is gzip) as a NUL-terminated string. */
static char *read_text(const char *path, Err *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        err_set(err, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s", path,
                strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        int k = gzread(f, buf + n, (unsigned)(cap - n));
        if (k < 0) {
            int e;
            err_set(err, ERR_FORMAT, "%s: cannot read: %s", path, gzerror(f, &e));
            gzclose(f);
            free(buf);
            return NULL;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    gzclose(f);
    buf[n] = '\0';
    return buf;
}

ClipTokenizer *clip_tokenizer_load_bpe(const char *path, Err *err) {
    char *buf = read_text(path, err);
    if (!buf)
        return NULL;
    size_t n_lines;
    char **lines = split_lines(buf, &n_lines);
    ClipTokenizer *t = NULL;
    if (n_lines < 1 + N_MERGES) {
        err_set(err, ERR_FORMAT, "%s: %zu lines, a CLIP merges file has at least %d", path,
                n_lines, 1 + N_MERGES);
        goto out;
    }
    t = tok_new();
    int order[256];
    bytes_in_vocab_order(order);
    uint32_t map[256];
    bytes_to_unicode(map);
    int32_t id = 0;
    for (int eow = 0; eow < 2; eow++)
        for (int i = 0; i < 256; i++) {
            char s[16];
            size_t k = utf8_put(s, map[order[i]]);
            s[k] = '\0';
            if (eow)
                memcpy(s + k, "</w>", 5);
            vocab_put(t, s, id++);
        }
    for (size_t i = 1; i <= N_MERGES; i++) {
        char *l = lines[i], *o = xmalloc(strlen(l) + 1), *q = o;
        for (char *p = l; *p; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r')
                *q++ = *p;
        *q = '\0';
        vocab_put(t, o, id++);
        free(o);
    }
    t->sot = id;
    vocab_put(t, "<start_of_text>", id++);
    t->eot = id;
    vocab_put(t, "<end_of_text>", id++);
    t->vocab_size = id;
    if (tok_finish(t, lines + 1, N_MERGES, path, path, err) != 0) {
        clip_tokenizer_free(t);
        t = NULL;
    }
out:
    free(lines);
    free(buf);
    return t;
}

ClipTokenizer *clip_tokenizer_load_hf(const char *vocab_json, const char *merges_txt, Err *err) {
    json_error_t je;
    json_t *root = json_load_file(vocab_json, 0, &je);
    if (!root) {
        struct stat sb;
        err_set(err, stat(vocab_json, &sb) != 0 ? ERR_NOTFOUND : ERR_FORMAT, "%s:%d: %s",
                vocab_json, je.line, je.text);
        return NULL;
    }
    ClipTokenizer *t = NULL;
    char *buf = NULL;
    char **lines = NULL;
    if (!json_is_object(root)) {
        err_set(err, ERR_FORMAT, "%s: not a JSON object of token -> id", vocab_json);
        goto out;
    }
    t = tok_new();
    const char *k;
    json_t *v;
    int32_t max_id = -1;
    json_object_foreach(root, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 10000000) {
            err_set(err, ERR_FORMAT, "%s: token \"%s\" has no valid id", vocab_json, k);
            goto fail;
        }
        int32_t id = (int32_t)json_integer_value(v);
        vocab_put(t, k, id);
        if (id > max_id)
            max_id = id;
    }
    t->vocab_size = max_id + 1;
    t->sot = vocab_get(t, "<|startoftext|>");
    t->eot = vocab_get(t, "<|endoftext|>");
    if (t->sot < 0 || t->eot < 0) {
        err_set(err, ERR_FORMAT, "%s: lacks <|startoftext|> or <|endoftext|>", vocab_json);
        goto fail;
    }
    vocab_put(t, "<start_of_text>", t->sot);
    vocab_put(t, "<end_of_text>", t->eot);
    buf = read_text(merges_txt, err);
    if (!buf)
        goto fail;
    size_t n_lines;
    lines = split_lines(buf, &n_lines);
    /* the reference: read().strip().split("\n")[1 : 49152-256-2+1] */
    while (n_lines > 0 && lines[n_lines - 1][strspn(lines[n_lines - 1], " \t\r")] == '\0')
        n_lines--;
    size_t n_merges = n_lines > 1 ? n_lines - 1 : 0;
    if (n_merges > N_MERGES)
        n_merges = N_MERGES;
    if (n_merges == 0) {
        err_set(err, ERR_FORMAT, "%s: no merges", merges_txt);
        goto fail;
    }
    if (tok_finish(t, lines + 1, n_merges, vocab_json, merges_txt, err) != 0)
        goto fail;
    goto out;
fail:
    clip_tokenizer_free(t);
    t = NULL;
out:
    free(lines);
    free(buf);
    json_decref(root);
    return t;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* tokenizer.json (Hugging Face tokenizers, as transformers 5 saves a CLIPTokenizer): its
 * model.vocab and model.merges (["a", "b"] pairs or "a b" strings), which must be a BPE
 * with CLIP's "</w>" word ends. */
ClipTokenizer *clip_tokenizer_load_json(const char *path, Err *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        err_set(err, file_exists(path) ? ERR_FORMAT : ERR_NOTFOUND, "%s:%d: %s", path, je.line,
                je.text);
        return NULL;
    }
    ClipTokenizer *t = NULL;
    char **lines = NULL;
    size_t n_merges = 0;
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    const char *type = json_string_value(json_object_get(model, "type"));
    const char *eow = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if (!type || strcmp(type, "BPE") != 0 || !eow || strcmp(eow, "</w>") != 0 ||
        !json_is_object(vocab) || !json_is_array(merges)) {
        err_set(err, ERR_FORMAT, "%s: not a CLIP tokenizer (\"model\" must be a BPE with "
                "\"vocab\", \"merges\" and the end_of_word_suffix \"</w>\")", path);
        goto out;
    }
    t = tok_new();
    const char *k;
    json_t *v;
    int32_t max_id = -1;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 10000000) {
            err_set(err, ERR_FORMAT, "%s: token \"%s\" has no valid id", path, k);
            goto fail;
        }
        int32_t id = (int32_t)json_integer_value(v);
        vocab_put(t, k, id);
        if (id > max_id)
            max_id = id;
    }
    t->vocab_size = max_id + 1;
    t->sot = vocab_get(t, "<|startoftext|>");
    t->eot = vocab_get(t, "<|endoftext|>");
    if (t->sot < 0 || t->eot < 0) {
        err_set(err, ERR_FORMAT, "%s: lacks <|startoftext|> or <|endoftext|>", path);
        goto fail;
    }
    vocab_put(t, "<start_of_text>", t->sot);
    vocab_put(t, "<end_of_text>", t->eot);
    n_merges = json_array_size(merges);
    if (n_merges > N_MERGES)
        n_merges = N_MERGES;
    if (n_merges == 0) {
        err_set(err, ERR_FORMAT, "%s: no merges", path);
        goto fail;
    }
    lines = xcalloc(n_merges, sizeof *lines);
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a = json_string_value(json_array_get(m, 0));
        const char *b = json_string_value(json_array_get(m, 1));
        if (json_is_string(m))
            lines[i] = xstrdup(json_string_value(m));
        else if (a && b && json_array_size(m) == 2)
            lines[i] = xasprintf("%s %s", a, b);
        else {
            err_set(err, ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]",
                    path, i);
            goto fail;
        }
    }
    if (tok_finish(t, lines, n_merges, path, path, err) != 0)
        goto fail;
    goto out;
fail:
    clip_tokenizer_free(t);
    t = NULL;
out:
    for (size_t i = 0; lines && i < n_merges; i++)
        free(lines[i]);
    free(lines);
    json_decref(root);
    return t;
}

ClipTokenizer *clip_tokenizer_load_dir(const char *dir, Err *err) {
    char *vj = xasprintf("%s/vocab.json", dir), *mt = xasprintf("%s/merges.txt", dir);
    char *gz = xasprintf("%s/bpe_simple_vocab_16e6.txt.gz", dir);
    char *tx = xasprintf("%s/bpe_simple_vocab_16e6.txt", dir);
    char *tj = xasprintf("%s/tokenizer.json", dir);
    ClipTokenizer *t = NULL;
    if (file_exists(vj) && file_exists(mt))
        t = clip_tokenizer_load_hf(vj, mt, err);
    else if (file_exists(tj))
        t = clip_tokenizer_load_json(tj, err);
    else if (file_exists(gz))
        t = clip_tokenizer_load_bpe(gz, err);
    else if (file_exists(tx))
        t = clip_tokenizer_load_bpe(tx, err);
    else
        err_set(err, ERR_NOTFOUND,
                "%s: no tokenizer files: need vocab.json + merges.txt, tokenizer.json, or "
                "bpe_simple_vocab_16e6.txt.gz (it ships with open_clip; copy it into the folder)",
                dir);
    free(vj);
    free(mt);
    free(gz);
    free(tx);
    free(tj);
    return t;
}

int32_t clip_tokenizer_sot(const ClipTokenizer *t) { return t->sot; }
int32_t clip_tokenizer_eot(const ClipTokenizer *t) { return t->eot; }
int32_t clip_tokenizer_token_id(const ClipTokenizer *t, const char *token) {
    return vocab_get(t, token);
}
int32_t clip_tokenizer_vocab_size(const ClipTokenizer *t) { return t->vocab_size; }
void clip_tokenizer_set_hf_clean(ClipTokenizer *t, int on) { t->hf_clean = on != 0; }

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct IdSink {
    int32_t *ids;
    size_t max, n;
} IdSink;

static void sink_put(IdSink *s, int32_t id) {
    if (s->n < s->max)
        s->ids[s->n] = id;
    s->n++;
}

/* BPE of one piece (its UTF-8 bytes). */
static void bpe_piece(const ClipTokenizer *t, const unsigned char *b, size_t n, IdSink *out) {
    int32_t local[64];
    int32_t *w = n <= 64 ? local : xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        w[i] = i + 1 == n ? t->byte_eow_id[b[i]] : t->byte_id[b[i]];
    size_t len = n;
    while (len > 1) {
        int32_t best = INT32_MAX, ba = -1, bb = -1, bm = -1;
        for (size_t i = 0; i + 1 < len; i++) {
            const PairSlot *p = pair_get(t, w[i], w[i + 1]);
            if (p && p->rank < best) {
                best = p->rank;
                ba = w[i];
                bb = w[i + 1];
                bm = p->merged;
            }
        }
        if (ba < 0)
            break;
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && w[i] == ba && w[i + 1] == bb) {
                w[o++] = bm;
                i += 2;
            } else {
                w[o++] = w[i++];
            }
        }
        len = o;
    }
    for (size_t i = 0; i < len; i++)
        sink_put(out, w[i]);
    if (w != local)
        free(w);
}

static int match_ascii(const uint32_t *v, size_t n, size_t i, const char *s) {
    for (; *s; s++, i++)
        if (i >= n || v[i] != (unsigned char)*s)
            return 0;
    return 1;
}

/* Length of the contraction at v[i] ('s 't 're 've 'm 'll 'd, case-insensitive), or 0. */
static size_t contraction(const uint32_t *v, size_t n, size_t i) {
    if (v[i] != '\'' || i + 1 >= n)
        return 0;
    uint32_t c = v[i + 1];
    if (c == 's' || c == 0x17f /* long s folds to s */ || c == 't' || c == 'm' || c == 'd')
        return 2;
    if (i + 2 < n && ((c == 'r' && v[i + 2] == 'e') || (c == 'v' && v[i + 2] == 'e') ||
                      (c == 'l' && v[i + 2] == 'l')))
        return 3;
    return 0;
}

static void encode_into(const ClipTokenizer *t, const char *text, IdSink *out) {
    U32Buf v = {0};
    clean_text(&v, text, t->hf_clean);
    size_t n = v.n;
    char *bytes = xmalloc(4 * n + 1);
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        /* the special tokens as the reference names them: OpenCLIP's, or transformers' */
        const char *sot = t->hf_clean ? "<|startoftext|>" : "<start_of_text>";
        const char *eot = t->hf_clean ? "<|endoftext|>" : "<end_of_text>";
        if (match_ascii(v.v, n, i, sot)) {
            sink_put(out, t->sot);
            i += strlen(sot);
            continue;
        }
        if (match_ascii(v.v, n, i, eot)) {
            sink_put(out, t->eot);
            i += strlen(eot);
            continue;
        }
        int cls = cls_of(v.v[i]);
        if ((len = contraction(v.v, n, i)) > 0) {
        } else if (cls == 1) {
            while (i + len < n && cls_of(v.v[i + len]) == 1)
                len++;
        } else if (cls == 2) {
            len = 1;
        } else if (cls == 0) {
            while (i + len < n && cls_of(v.v[i + len]) == 0)
                len++;
        } else {
            i++; /* whitespace separates pieces */
            continue;
        }
        size_t nb = 0;
        for (size_t k = 0; k < len; k++)
            nb += utf8_put(bytes + nb, v.v[i + k]);
        bpe_piece(t, (const unsigned char *)bytes, nb, out);
        i += len;
    }
    free(bytes);
    free(v.v);
}

size_t clip_tokenizer_encode(const ClipTokenizer *t, const char *text, int32_t *ids, size_t max) {
    IdSink s = {ids, max, 0};
    encode_into(t, text, &s);
    return s.n;
}

int clip_tokenizer_tokenize(const ClipTokenizer *t, const char *text, int32_t *ids, int context) {
    ASSERT(context >= 2);
    memset(ids, 0, (size_t)context * sizeof(int32_t));
    ids[0] = t->sot;
    IdSink s = {ids + 1, (size_t)context - 1, 0};
    encode_into(t, text, &s);
    size_t n = s.n + 2; /* with start and end */
    if (n > (size_t)context) {
        ids[context - 1] = t->eot;
        return context;
    }
    ids[n - 1] = t->eot;
    return (int)n;
}
