/* test_clip_tokenizer — token ids equal open_clip's SimpleTokenizer on the strings of
 * tests/fixtures/clip/tokenizer.json (made by tests/clip/make_fixtures.py), with both
 * vocabulary file formats; truncation and errors. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "clip_tokenizer.h"

#define FIX "tests/fixtures/clip/"

static void check_all(ClipTokenizer *tok) {
    json_error_t je;
    json_t *cases = json_load_file(FIX "tokenizer.json", 0, &je);
    cr_assert(cases, "%s", je.text);
    size_t n = json_array_size(cases), n_bad = 0;
    cr_assert_geq(n, 300);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *ids = json_object_get(c, "ids");
        int32_t got[CLIP_CONTEXT_LEN];
        int k = clip_tokenizer_tokenize(tok, text, got, CLIP_CONTEXT_LEN);
        int ok = (size_t)k == json_array_size(ids);
        for (int j = 0; ok && j < k; j++)
            ok = got[j] == json_integer_value(json_array_get(ids, (size_t)j));
        for (int j = k; ok && j < CLIP_CONTEXT_LEN; j++)
            ok = got[j] == 0;
        if (!ok) {
            char *clean = clip_text_clean(text);
            fprintf(stderr, "mismatch #%zu: text '%s' cleaned '%s'\n  got ", i, text, clean);
            for (int j = 0; j < k; j++)
                fprintf(stderr, "%d ", got[j]);
            fprintf(stderr, "\n want ");
            for (size_t j = 0; j < json_array_size(ids); j++)
                fprintf(stderr, "%lld ", json_integer_value(json_array_get(ids, j)));
            fprintf(stderr, "\n");
            free(clean);
            n_bad++;
        }
    }
    json_decref(cases);
    cr_assert_eq(n_bad, 0, "%zu of %zu strings differ from open_clip", n_bad, n);
}

Test(clip_tokenizer, openclip_bpe_gz_matches_reference) {
    Err err = {0};
    ClipTokenizer *tok = clip_tokenizer_load_dir(FIX "tiny_openclip", &err);
    cr_assert(tok, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_sot(tok), 49406);
    cr_assert_eq(clip_tokenizer_eot(tok), 49407);
    cr_assert_eq(clip_tokenizer_vocab_size(tok), 49408);
    check_all(tok);
    clip_tokenizer_free(tok);
}

Test(clip_tokenizer, hf_vocab_json_merges_match_reference) {
    Err err = {0};
    ClipTokenizer *tok = clip_tokenizer_load_dir(FIX "tiny_hf", &err);
    cr_assert(tok, "%s", err.msg);
    cr_assert_eq(clip_tokenizer_sot(tok), 49406);
    cr_assert_eq(clip_tokenizer_eot(tok), 49407);
    check_all(tok);
    clip_tokenizer_free(tok);
}

Test(clip_tokenizer, truncation_and_short_context) {
    Err err = {0};
    ClipTokenizer *tok = clip_tokenizer_load_dir(FIX "tiny_openclip", &err);
    cr_assert(tok, "%s", err.msg);
    int32_t ids[8];
    cr_assert_eq(clip_tokenizer_tokenize(tok, "one two three four five six seven eight", ids, 8),
                 8);
    cr_assert_eq(ids[0], 49406);
    cr_assert_eq(ids[7], 49407);
    cr_assert_eq(clip_tokenizer_tokenize(tok, "", ids, 8), 2);
    cr_assert_eq(ids[1], 49407);
    cr_assert_eq(ids[2], 0);
    cr_assert_eq(clip_tokenizer_encode(tok, "hello world", NULL, 0), 2);
    clip_tokenizer_free(tok);
}

Test(clip_tokenizer, missing_and_bad_files_are_clear_errors) {
    Err err = {0};
    cr_assert_null(clip_tokenizer_load_dir("/nonexistent-dir", &err));
    cr_assert_eq(err.code, ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "vocab.json"), "%s", err.msg);
    char dir[] = "/tmp/easel-tok-XXXXXX";
    cr_assert(mkdtemp(dir));
    char *vj = xasprintf("%s/vocab.json", dir), *mt = xasprintf("%s/merges.txt", dir);
    FILE *f = fopen(vj, "w");
    fputs("{\"a\": 1,", f);
    fclose(f);
    f = fopen(mt, "w");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    cr_assert_null(clip_tokenizer_load_dir(dir, &err));
    cr_assert_eq(err.code, ERR_FORMAT);
    cr_assert(strstr(err.msg, vj), "%s", err.msg);
    f = fopen(vj, "w");
    fputs("{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}", f);
    fclose(f);
    cr_assert_null(clip_tokenizer_load_dir(dir, &err));
    cr_assert_eq(err.code, ERR_FORMAT);
    cr_assert(strstr(err.msg, vj), "%s", err.msg);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    free(vj);
    free(mt);
}
