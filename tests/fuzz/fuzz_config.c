/* Fuzz target: config.json (policy_config_parse), from memory. The text is copied into a buffer of exactly its
 * length, without a NUL, so a read past the end is an AddressSanitizer report. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    policy_config c;
    memset(&c, 0xa5, sizeof c);
    if (policy_config_parse("config.json", text, size, &c) == BR_OK) {
        fuzz_accepted++;
        /* What policy.h promises of a parsed config. */
        FUZZ_CHECK(c.arch == POLICY_ARCH_LLAMA || c.arch == POLICY_ARCH_QWEN2 || c.arch == POLICY_ARCH_QWEN3 ||
                   c.arch == POLICY_ARCH_GPT2);
        FUZZ_CHECK(memchr(c.model_type, 0, sizeof c.model_type) != NULL);
        FUZZ_CHECK(strcmp(c.model_type, policy_arch_name(c.arch)) == 0);
        FUZZ_CHECK(c.dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0);
        FUZZ_CHECK(c.ffn_dim > 0 && c.vocab > 0 && c.max_pos > 0);
        FUZZ_CHECK(c.n_heads % c.n_kv_heads == 0);
        FUZZ_CHECK((int64_t)c.n_heads * c.head_dim <= 2147483647);
        FUZZ_CHECK(c.bos_id >= -1 && c.bos_id < c.vocab && c.eos_id >= -1 && c.eos_id < c.vocab);
        FUZZ_CHECK(c.norm_eps > 0.0f && isfinite(c.norm_eps)); /* used as a float: no 0, no inf */
        FUZZ_CHECK(c.rope_theta >= 0.0);
    }
    free(text);
    return 0;
}
