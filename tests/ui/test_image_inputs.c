/* Hostile image files against every decoder easel has: the encoders' (src/data/encoder.c, used by
 * classic features, training, scoring and `embed`), CLIP's preprocessing (src/models/clip_image.c)
 * and the TUI's (ui/gfx_image.c). A FIFO or /dev/zero must give a clear error at once instead
 * of hanging or eating memory; a header declaring an absurd size is refused before decoding. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "clip_image.h"
#include "encoder.h"
#include "image.h"
#include "gfx.h"
#include "support.h"

#define GOOD "tests/fixtures/clip/images/rgb_50x37.png"

static char tmpdir[64];

static void setup(void) { support_tmpdir_make(tmpdir, sizeof tmpdir, "imgin"); }
static void teardown(void) { support_tmpdir_remove(tmpdir); }

TestSuite(image_inputs, .init = setup, .fini = teardown);

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A PNG whose header declares W x H (RGB, 8 bits) followed by a few bytes of nothing: the
 * decoder would allocate W*H*3 bytes before finding out. */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
    unsigned char b[64] = "\x89PNG\r\n\x1a\n";
    put_be32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    put_be32(b + 16, w);
    put_be32(b + 20, h);
    b[24] = 8;
    b[25] = 2; /* truecolour; compression, filter, interlace 0; CRC left 0 */
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(b, 1, sizeof b, f);
    fclose(f);
}

/* Each decoder on PATH must fail with a message holding WORD; when UNREADABLE, hashing the
 * file too (the bytes themselves may not be read). */
static void expect_refused(const char *path, const char *word, int unreadable) {
    Err err = {0};
    Image im;
    cr_expect_neq(image_load(path, 3, &im, &err), 0, "image decoded %s", path);
    cr_expect_null(im.px);
    cr_expect(strstr(err.msg, word), "image: %s", err.msg);
    image_deinit(&im);

    ClipImage ci;
    err = (Err){0};
    cr_expect_neq(clip_image_load(&ci, path, &err), 0, "clip decoded %s", path);
    cr_expect(strstr(err.msg, word), "clip: %s", err.msg);
    clip_image_deinit(&ci);

    GfxImage gi;
    err = (Err){0};
    cr_expect_neq(gfx_image_load(path, &gi, &err), 0, "ui decoded %s", path);
    cr_expect(strstr(err.msg, word), "ui: %s", err.msg);
    gfx_image_deinit(&gi);

    char hex[65];
    err = (Err){0};
    if (unreadable) {
        cr_expect_neq(encoder_hash_file(path, hex, &err), 0, "hashed %s", path);
        cr_expect(strstr(err.msg, word), "hash: %s", err.msg);
    }
}

Test(image_inputs, good_file_still_decodes) {
    Err err = {0};
    Image im;
    cr_assert_eq(image_load(GOOD, 3, &im, &err), 0, "%s", err.msg);
    cr_assert(im.w == 50 && im.h == 37 && im.channels == 3);
    image_deinit(&im);
    ClipImage ci;
    cr_assert_eq(clip_image_load(&ci, GOOD, &err), 0, "%s", err.msg);
    cr_assert(ci.w == 50 && ci.h == 37);
    clip_image_deinit(&ci);
    GfxImage gi;
    cr_assert_eq(gfx_image_load(GOOD, &gi, &err), 0, "%s", err.msg);
    cr_assert(gi.w == 50 && gi.h == 37);
    gfx_image_deinit(&gi);
}

Test(image_inputs, fifo_and_devices_refused_at_once) {
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/pipe.png", tmpdir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    alarm(20); /* a decoder that waits for a writer fails the test instead of hanging it */
    expect_refused(fifo, "FIFO", 1);
    expect_refused("/dev/zero", "character device", 1);
    expect_refused(tmpdir, "directory", 1);
    alarm(0);
}

Test(image_inputs, absurd_sizes_refused_before_decoding) {
    char path[128];
    snprintf(path, sizeof path, "%s/wide.png", tmpdir);
    write_png_header(path, 100000, 10); /* a side over 16384 */
    expect_refused(path, "pixels", 0);
    snprintf(path, sizeof path, "%s/huge.png", tmpdir);
    write_png_header(path, 16000, 16000); /* 256 megapixels */
    expect_refused(path, "pixels", 0);
}

/* The CLI says so too, quickly, with the file's name. */
Test(image_inputs, embed_cli_names_the_problem) {
    char easel[4096], *out, *err;
    support_easel_path(easel, sizeof easel);
    alarm(30);
    int rc = support_run(tmpdir, &out, &err, "'%s' --db e.db embed --encoder classic --image "
                         "/dev/zero", easel);
    alarm(0);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(strstr(err, "/dev/zero") && strstr(err, "regular file"), "%s", err);
    free(out);
    free(err);
}

/* make fuzz found stb_image 2.27 overflowing the heap on a 16-bit PGM converted to RGB (its
 * PNM loader converts 16-bit samples with the 8-bit routine). easel decodes only the formats
 * it reads (PNG, JPEG, BMP, GIF, TGA): a PNM file is refused like any unknown format. */
Test(image_inputs, pnm_16bit_refused) {
    char path[128];
    snprintf(path, sizeof path, "%s/deep.png", tmpdir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("P5\n13 7\n65535\n", f);
    for (int i = 0; i < 13 * 7; i++) {
        fputc(i, f);
        fputc(255 - i, f);
    }
    fclose(f);
    expect_refused(path, "deep.png", 0);
}

/* make fuzz found stb_image 2.27 writing past its Huffman table on a JPEG whose DHT declares
 * more than 256 codes (tests/fixtures/image_inputs/fuzz_dht_overflow.jpg is that input).
 * image_guard refuses such a table before stb sees it; the same with the overflow planted in
 * a good photo's first table. */
Test(image_inputs, jpeg_huffman_overflow_refused) {
    expect_refused("tests/fixtures/image_inputs/fuzz_dht_overflow.jpg", "Huffman", 0);
    FILE *f = fopen("tests/fixtures/clip/images/photo_120x90.jpg", "rb");
    cr_assert_not_null(f);
    static unsigned char b[1 << 16];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    size_t i = 2;
    while (i + 4 < n && !(b[i] == 0xff && b[i + 1] == 0xc4))
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    cr_assert(i + 21 < n, "no DHT in the photo");
    for (int k = 0; k < 16; k++) /* the table's 16 counts: 16 * 17 = 272 codes */
        b[i + 5 + k] = 17;
    char path[128];
    snprintf(path, sizeof path, "%s/dht.jpg", tmpdir);
    f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(b, 1, n, f);
    fclose(f);
    expect_refused(path, "272 codes", 0);
}
