/* Fuzz target: tokenizer.json loading (tok_load), then encoding and decoding a fixed text with what was loaded.
 * tok_load takes a path: each input is written to <scratch>/tok/tokenizer.json, a directory with no
 * tokenizer_config.json, so the post_processor template of the input decides BOS/EOS. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "policy/tokenizer/tokenizer.h"

/* ASCII, a newline, digits, accents (NFC and NFD), CJK, an emoji, an added-token look-alike, runs of spaces. */
static const char k_text[] = "Once upon a time, Lily saw 123 birds!\n  It's  e\xcc\x81 \xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd "
                             "\xf0\x9f\x98\x80 <|endoftext|><s></s> \t end";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *path;
    if (!path) {
        fuzz_scratch_path("tok/");
        path = fuzz_scratch_path("tok/tokenizer.json");
    }
    fuzz_write_file(path, data, size);
    tok_tokenizer *t = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    size_t n = 0, len = 0;
    if (tok_load(path, &t) != BR_OK) {
        FUZZ_CHECK(t == NULL);
        return 0;
    }
    fuzz_accepted++;
    int vocab = tok_vocab_size(t);
    FUZZ_CHECK(vocab >= 0);
    FUZZ_CHECK(tok_bos_id(t) >= -1 && tok_bos_id(t) < vocab);
    FUZZ_CHECK(tok_eos_id(t) >= -1 && tok_eos_id(t) < vocab);
    for (int add = 0; add < 2; add++) {
        if (tok_encode(t, k_text, sizeof k_text - 1, add, &ids, &n) == BR_OK) {
            for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
            for (int skip = 0; skip < 2; skip++) {
                if (tok_decode(t, ids, n, skip, &text, &len) == BR_OK) {
                    FUZZ_CHECK(text && text[len] == '\0');
                }
                free(text);
                text = NULL;
            }
        }
        free(ids);
        ids = NULL;
    }
    /* Every id's piece maps back to some id; added tokens of the input are looked up both ways. */
    for (int32_t id = 0; id < vocab && id < 4096; id++) {
        const char *p = tok_id_to_piece(t, id);
        if (p) FUZZ_CHECK(tok_piece_to_id(t, p) >= 0);
        (void)tok_is_special(t, id);
    }
    tok_free(t);
    return 0;
}
