/* Tests for src/data/encoder.c and src/store/store_embed.c: backend lookup, decoding errors, the
 * embedding cache (hit, miss, shape check, nothing stored on failure). */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encoder.h"
#include "feat_classic.h"
#include "store.h"
#include "store_embed.h"
#include "support.h"
#include "support_fixtures.h"

static char dir[64];
static char dbpath[128];
static Store *st;

static void setup(void) {
    support_tmpdir_make(dir, sizeof dir, "enc");
    st = support_store_open(dir, "s.db", dbpath, sizeof dbpath);
}

static void teardown(void) {
    store_close(st);
    support_tmpdir_remove(dir);
}

TestSuite(encoder, .init = setup, .fini = teardown);

static void write_png(const char *path, int w, int h, int shade) {
    unsigned char *p = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        p[3 * i] = (unsigned char)((i % w) * 255 / w);
        p[3 * i + 1] = (unsigned char)shade;
        p[3 * i + 2] = (unsigned char)((i / w) * 255 / h);
    }
    support_png_write(path, w, h, p);
    free(p);
}

Test(encoder, unknown_name_lists_known) {
    Err err = {0};
    Encoder *enc = (Encoder *)&err; /* any non-NULL: NULL after a failure */
    cr_assert_eq(encoder_open("nope", st, &enc, &err), ERR_USAGE);
    cr_assert_null(enc);
    cr_assert_eq(err.code, ERR_USAGE);
    cr_assert(strstr(err.msg, "classic"), "%s", err.msg);
    cr_assert_neq(encoder_open("classic:x", st, &enc, &err), 0);
    /* without an Err the code still comes back (nothing reads through a NULL err) */
    cr_assert_eq(encoder_open("classic:x", st, &enc, NULL), ERR_USAGE);
    cr_assert_null(enc);
}

Test(encoder, image_cache_hit_and_miss) {
    Err err = {0};
    Encoder *enc;
    cr_assert_eq(encoder_open("classic", st, &enc, &err), 0, "%s", err.msg);
    cr_assert_not_null(enc, "%s", err.msg);
    cr_assert_eq(enc->n_image_tokens, FEAT_CLASSIC_TOKENS);
    char a[160], b[160];
    snprintf(a, sizeof a, "%s/a.png", dir);
    snprintf(b, sizeof b, "%s/b.png", dir);
    write_png(a, 64, 48, 10);
    write_png(b, 64, 48, 200);
    float *va = NULL, *va2 = NULL, *vb = NULL;
    cr_assert_eq(encoder_embed_image(enc, st, a, NULL, &va, &err), 0, "%s", err.msg);
    cr_assert_eq(store_embed_count(st, "classic", "image", NULL), 1);
    /* the same content under the hash as key: a hit, same floats */
    char hex[65];
    cr_assert_eq(encoder_hash_file(a, hex, &err), 0);
    cr_assert_eq(encoder_embed_image(enc, st, a, hex, &va2, &err), 0);
    cr_assert_eq(memcmp(va, va2, sizeof(float) * FEAT_CLASSIC_TOKENS * FEAT_CLASSIC_DIM), 0);
    cr_assert_eq(store_embed_count(st, "classic", "image", NULL), 1);
    cr_assert_eq(encoder_embed_image(enc, st, b, NULL, &vb, &err), 0);
    cr_assert_eq(store_embed_count(st, "classic", "image", NULL), 2);
    cr_assert_neq(memcmp(va, vb, sizeof(float) * FEAT_CLASSIC_DIM), 0);
    /* the cache really answers: a cached row is returned even if the file is gone */
    unlink(a);
    free(va2);
    cr_assert_eq(encoder_embed_image(enc, st, a, hex, &va2, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(va, va2, sizeof(float) * FEAT_CLASSIC_DIM), 0);
    free(va);
    free(va2);
    free(vb);
    float *t1 = NULL, *t2 = NULL;
    cr_assert_eq(encoder_embed_text(enc, st, "a red fox", &t1, &err), 0);
    cr_assert_eq(encoder_embed_text(enc, st, "a red fox", &t2, &err), 0);
    cr_assert_eq(memcmp(t1, t2, sizeof(float) * FEAT_CLASSIC_DIM), 0);
    cr_assert_eq(store_embed_count(st, "classic", "text", NULL), 1);
    free(t1);
    free(t2);
    cr_assert_eq(store_embed_clear(st, "classic", &err), 3);
    encoder_free(enc);
}

Test(encoder, corrupt_image_names_file_and_stores_nothing) {
    Err err = {0};
    Encoder *enc;
    cr_assert_eq(encoder_open("classic", st, &enc, &err), 0, "%s", err.msg);
    char p[160];
    support_write_file(dir, "bad.png", "\x89PNG\r\n\x1a\n this is not a png", p, sizeof p);
    float *v = NULL;
    cr_assert_neq(encoder_embed_image(enc, st, p, NULL, &v, &err), 0);
    cr_assert(strstr(err.msg, "bad.png"), "%s", err.msg);
    cr_assert_eq(store_embed_count(st, NULL, NULL, NULL), 0);
    snprintf(p, sizeof p, "%s/missing.png", dir);
    cr_assert_eq(encoder_embed_image(enc, st, p, NULL, &v, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "missing.png"), "%s", err.msg);
    /* too small for the classic encoder: decoded fine, refused by the features */
    snprintf(p, sizeof p, "%s/tiny.png", dir);
    write_png(p, 8, 8, 0);
    cr_assert_eq(encoder_embed_image(enc, st, p, NULL, &v, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "tiny.png"), "%s", err.msg);
    cr_assert_eq(store_embed_count(st, NULL, NULL, NULL), 0);
    encoder_free(enc);
}

Test(encoder, store_embed_roundtrip_and_bad_blob) {
    Err err = {0};
    float v[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    cr_assert_eq(store_embed_put(st, "x", "image", "k", v, 3, 2, &err), 0, "%s", err.msg);
    float *out = NULL;
    int dim = 0, nt = 0;
    cr_assert_eq(store_embed_get(st, "x", "image", "k", &out, &dim, &nt, &err), 0);
    cr_assert_eq(dim, 3);
    cr_assert_eq(nt, 2);
    cr_assert_eq(memcmp(out, v, sizeof v), 0);
    free(out);
    cr_assert_eq(store_embed_get(st, "x", "text", "k", &out, &dim, &nt, &err), ERR_NOTFOUND);
    /* a row whose blob does not match its shape is reported, not read out of bounds */
    support_sql_exec(dbpath, "UPDATE embeddings SET n_tokens=5");
    cr_assert_eq(store_embed_get(st, "x", "image", "k", &out, &dim, &nt, &err), ERR_FORMAT);
    cr_assert(strstr(err.msg, "expected"), "%s", err.msg);
}
