/* Hugging Face tokenizer.json loader and encoder/decoder: byte-level BPE (GPT-2, Qwen2/3, Llama-3) and
 * SentencePiece-style BPE with byte fallback (Llama-2, stories260K), with added/special tokens. */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/br.h"

typedef struct tok_tokenizer tok_tokenizer; /* opaque, immutable after tok_load: share across threads */

/* Loads `path`: a tokenizer.json file, or a model directory that holds one. tokenizer_config.json next
 * to it (optional) supplies bos_token / eos_token and add_bos_token / add_eos_token; when it lacks
 * add_*_token, the post_processor template of tokenizer.json decides. Any component type that is not
 * implemented (model, normalizer, pre_tokenizer, post_processor, decoder) is BR_EFORMAT naming it. */
br_status tok_load(const char *path, tok_tokenizer **out);
void tok_free(tok_tokenizer *tok); /* NULL is a no-op */

/* Encodes `len` bytes of UTF-8 `text` (need not be NUL-terminated) into *ids (caller frees, may be
 * NULL when *n == 0). add_special != 0 adds BOS/EOS as configured (see tok_load). Added tokens in the
 * text are matched as HF does, before normalization. Invalid UTF-8 is BR_EINVAL and the message names
 * the byte offset of the first bad byte: "invalid UTF-8 at byte offset 7 (byte 0xff)". */
br_status tok_encode(const tok_tokenizer *tok, const char *text, size_t len, int add_special, int32_t **ids,
                     size_t *n);

/* Decodes ids into *text (caller frees; NUL-terminated, *len excludes the NUL). skip_special != 0 drops
 * added tokens marked special. An id outside [0, tok_vocab_size) or with no token is BR_EINVAL
 * (HF silently drops it). Byte sequences that are not valid UTF-8 become U+FFFD, as HF does. */
br_status tok_decode(const tok_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, char **text,
                     size_t *len);

int tok_vocab_size(const tok_tokenizer *tok); /* max id + 1 over the model vocab and added tokens */
int tok_bos_id(const tok_tokenizer *tok);     /* -1 when the tokenizer has none */
int tok_eos_id(const tok_tokenizer *tok);     /* -1 when the tokenizer has none */
/* The token's string as stored in tokenizer.json (e.g. "Ġthe", "▁the", "<0x0A>"); NULL for an id
 * outside the vocabulary. Valid until tok_free. */
const char *tok_id_to_piece(const tok_tokenizer *tok, int32_t id);
/* The id of a token string (model vocab or added token), -1 when absent. */
int32_t tok_piece_to_id(const tok_tokenizer *tok, const char *piece);
int tok_is_special(const tok_tokenizer *tok, int32_t id); /* 1 for added tokens marked special */

#endif
