/* Fuzz target: encoding arbitrary bytes with three real tokenizers (loaded once): stories260K (SentencePiece-style
 * BPE with byte fallback), GPT-2 (byte-level BPE) and Qwen3 (byte-level BPE, NFC, pcre2 pre-tokenizer).
 * Input: byte 0 picks the tokenizer (bits 0-1) and add_special (bit 2); the rest is the text.
 * Checks: invalid UTF-8 is the only rejection, ids are in the vocabulary, decoding succeeds, and GPT-2 (no
 * normalizer) decodes back to exactly the input bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "policy/tokenizer/tokenizer.h"

static tok_tokenizer *g_tok[3]; /* stories260K, gpt2, qwen3 */

static void load_all(void) {
    char path[1024];
    const char *names[3] = {NULL, "gpt2", "qwen3"};
    for (int i = 0; i < 3; i++) {
        if (i == 0) snprintf(path, sizeof path, "%s", fuzz_default_model());
        else snprintf(path, sizeof path, "%s/tokenizers/%s", fuzz_test_data(), names[i]);
        if (tok_load(path, &g_tok[i]) != BR_OK) {
            fprintf(stderr, "fuzz_tokenizer_encode: cannot load %s: %s\n", path, br_last_error());
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok[0]) load_all();
    if (size == 0) return 0;
    int which = data[0] & 3, add = (data[0] >> 2) & 1;
    if (which == 3) which = 1;
    const tok_tokenizer *t = g_tok[which];
    /* Exactly the text's bytes in their own allocation: no NUL, so an over-read is an ASan report. */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) return 0;
    if (len) memcpy(text, data + 1, len);
    int32_t *ids = NULL;
    char *out = NULL;
    size_t n = 0, out_len = 0;
    br_status st = tok_encode(t, text, len, add, &ids, &n);
    FUZZ_CHECK(st == BR_OK || st == BR_EINVAL);
    if (st == BR_OK) {
        fuzz_accepted++;
        int vocab = tok_vocab_size(t);
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
        FUZZ_CHECK(tok_decode(t, ids, n, 0, &out, &out_len) == BR_OK);
        FUZZ_CHECK(out[out_len] == '\0');
        if (which == 1 && !add) FUZZ_CHECK(out_len == len && memcmp(out, text, len) == 0);
    } else {
        FUZZ_CHECK(strstr(br_last_error(), "invalid UTF-8") != NULL);
    }
    free(out);
    free(ids);
    free(text);
    return 0;
}
