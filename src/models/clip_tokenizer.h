/* clip_tokenizer — CLIP's byte-level BPE tokenizer, as OpenCLIP's SimpleTokenizer does it.
 *
 * Text goes through: (1) the cleaning of ftfy.fix_text that matters for prompts — HTML
 * entities (ftfy's rules, repeated to a fixed point, off in a line holding '<'), terminal
 * escapes, C1 controls read as Windows-1252, Latin ligatures, full/half-width forms, curly
 * quotes, line breaks, control characters — then html.unescape twice and strip;
 * (2) whitespace runs to one space, (3) Python's str.lower(); (4) the reference split
 * pattern `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
 * [^\s\p{L}\p{N}]+` (case-insensitive); (5) each piece to UTF-8 bytes, bytes to BPE
 * symbols, the last one with "</w>", merged by rank. ids = [start] + pieces + [end],
 * truncated to the context (the last kept id becomes end) and zero-padded.
 * Not done: ftfy's mojibake repair and NFC normalisation (rare in prompts; doc/models.md).
 * The character tables (src/models/clip_unicode_data.h) are generated from the same Python
 * libraries the reference runs on.
 *
 * Vocabulary files, as model folders ship them: Hugging Face `vocab.json` + `merges.txt`,
 * or OpenCLIP's `bpe_simple_vocab_16e6.txt.gz` (or the same, uncompressed).
 *
 * Thread safety: a loaded ClipTokenizer is immutable; encode from any number of threads.
 */
#ifndef EASEL_CLIP_TOKENIZER_H
#define EASEL_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CLIP_CONTEXT_LEN 77

typedef struct ClipTokenizer ClipTokenizer;

/* Load from a model folder: vocab.json + merges.txt if both are there, else tokenizer.json,
 * else bpe_simple_vocab_16e6.txt[.gz] (or any *.txt.gz of that form). ERR_NOTFOUND names what
 * was looked for; ERR_FORMAT names the file and line. Free with clip_tokenizer_free. */
ClipTokenizer *clip_tokenizer_load_dir(const char *dir, Err *err);
/* Hugging Face pair. */
ClipTokenizer *clip_tokenizer_load_hf(const char *vocab_json, const char *merges_txt, Err *err);
/* tokenizer.json (Hugging Face tokenizers: a BPE model with "</w>" word ends). */
ClipTokenizer *clip_tokenizer_load_json(const char *path, Err *err);
/* OpenCLIP's merges file (gzip or plain text). */
ClipTokenizer *clip_tokenizer_load_bpe(const char *path, Err *err);
void clip_tokenizer_free(ClipTokenizer *tok); /* NULL allowed */

int32_t clip_tokenizer_sot(const ClipTokenizer *tok);  /* start of text id */
int32_t clip_tokenizer_eot(const ClipTokenizer *tok);  /* end of text id */
int32_t clip_tokenizer_vocab_size(const ClipTokenizer *tok);
/* ON: clean text as transformers' CLIPTokenizer does (what diffusion pipelines tokenize with):
 * steps 2-5 only, without step 1's ftfy fixes and HTML unescaping ("&amp;" and curly quotes
 * stay as they are), and "<|startoftext|>" / "<|endoftext|>" in the text are the special
 * tokens (not OpenCLIP's "<start_of_text>" / "<end_of_text>"). Set once after loading,
 * before any encoding. */
void clip_tokenizer_set_hf_clean(ClipTokenizer *tok, int on);
/* The id of one vocabulary entry as vocab.json spells it ("!", "<|endoftext|>"), or -1. */
int32_t clip_tokenizer_token_id(const ClipTokenizer *tok, const char *token);

/* BPE ids of TEXT (UTF-8; invalid bytes read as U+FFFD) without start/end, up to MAX of
 * them into IDS (may be NULL when MAX is 0). Returns the full count, which may exceed MAX. */
size_t clip_tokenizer_encode(const ClipTokenizer *tok, const char *text, int32_t *ids,
                             size_t max);

/* The model input: CONTEXT ids (start, pieces, end, zeros), truncated as the reference
 * does. Returns the number of non-padding ids (2..CONTEXT). CONTEXT >= 2. */
int clip_tokenizer_tokenize(const ClipTokenizer *tok, const char *text, int32_t *ids,
                            int context);

/* The cleaned, lower-cased text the split pattern sees (steps 1-3 above). Caller frees. */
char *clip_text_clean(const char *text);

#endif
