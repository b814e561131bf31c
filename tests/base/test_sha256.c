/* Tests for src/base/sha256.c: FIPS 180-4 example vectors, chunking, files against sha256sum. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

Test(sha256, fips_vectors) {
    char hex[65];
    sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha256_hex(a, 1000000, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

Test(sha256, chunked_updates_match_one_shot) {
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= 1000; len += 37) {
        char want[65];
        sha256_hex(buf, len, want);
        for (size_t step = 1; step < 130; step += 21) {
            Sha256 s;
            sha256_init(&s);
            for (size_t off = 0; off < len; off += step)
                sha256_update(&s, buf + off, off + step <= len ? step : len - off);
            uint8_t d[32];
            sha256_final(&s, d);
            char got[65];
            for (int i = 0; i < 32; i++)
                snprintf(got + 2 * i, 3, "%02x", d[i]);
            cr_assert_str_eq(got, want, "len %zu step %zu", len, step);
        }
    }
}

Test(sha256, file_matches_sha256sum) {
    const char *path = "tests/fixtures/import/images/1/0.png";
    char hex[65];
    Err err = {0};
    cr_assert_eq(sha256_file_hex(path, hex, &err), 0, "%s", err.msg);
    FILE *p = popen("sha256sum tests/fixtures/import/images/1/0.png", "r");
    cr_assert_not_null(p);
    char ref[65] = {0};
    cr_assert_eq(fscanf(p, "%64s", ref), 1);
    pclose(p);
    cr_assert_str_eq(hex, ref);
    cr_assert_eq(sha256_file_hex("tests/fixtures/import/nope.png", hex, &err), ERR_NOTFOUND);
    cr_assert(strstr(err.msg, "nope.png") != NULL);
}
