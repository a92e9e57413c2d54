/* Tests for policy/tokenizer: exact HF ids for every line of the reference encodings (qwen3, gpt2,
 * stories260K), round trips, special tokens, error messages, a 10 MB input, and the tokenize CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/br.h"
#include "policy/tokenizer/tokenizer.h"
#include "policy/tokenizer/tokenizer_int.h" /* tok_nfc */
#include "cli/cli_tokenize.h"

#define QWEN3_DIR BR_TEST_DATA "/tokenizers/qwen3"
#define GPT2_DIR BR_TEST_DATA "/tokenizers/gpt2"
#define STORIES_DIR BR_TEST_DATA "/../../configs/models/stories260K"

static tok_tokenizer *g_qwen3, *g_gpt2, *g_stories;

static tok_tokenizer *load(const char *path) {
    tok_tokenizer *t = NULL;
    br_status st = tok_load(path, &t);
    if (st) print_error("tok_load(%s): %s\n", path, br_last_error());
    assert_int_equal(st, BR_OK);
    return t;
}

static int setup(void **state) {
    (void)state;
    g_qwen3 = load(QWEN3_DIR);
    g_gpt2 = load(GPT2_DIR "/tokenizer.json"); /* the file form of the path */
    g_stories = load(STORIES_DIR);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tok_free(g_qwen3);
    tok_free(g_gpt2);
    tok_free(g_stories);
    return 0;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    print_message("    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 64; i++) print_message(" %d", ids[i]);
    print_message("%s\n", n > 64 ? " ..." : "");
}

/* Checks every line of an encodings.jsonl: ids (add_special_tokens=False), decode(ids) == "decoded",
 * decode(encode(text)) == text. Prints each mismatch, then fails if there was any. */
static void check_encodings(const tok_tokenizer *tok, const char *jsonl, int expect_lines) {
    char *data = NULL;
    size_t len;
    assert_int_equal(br_read_file(jsonl, &data, &len), BR_OK);
    int lines = 0, bad_ids = 0, bad_dec = 0, bad_round = 0, not_identity = 0;
    for (char *line = data, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!*line) continue;
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        const cJSON *jt = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *ji = cJSON_GetObjectItemCaseSensitive(o, "ids");
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(o, "decoded");
        assert_true(cJSON_IsString(jt) && cJSON_IsArray(ji) && cJSON_IsString(jd));
        const char *text = jt->valuestring, *decoded = jd->valuestring;
        size_t ne = (size_t)cJSON_GetArraySize(ji);
        int32_t *expect = malloc((ne + 1) * sizeof *expect);
        assert_non_null(expect);
        for (size_t i = 0; i < ne; i++) expect[i] = cJSON_GetArrayItem(ji, (int)i)->valueint;
        lines++;

        int32_t *ids = NULL;
        size_t n = 0;
        br_status st = tok_encode(tok, text, strlen(text), 0, &ids, &n);
        if (st) print_error("line %d: encode failed: %s\n", lines, br_last_error());
        assert_int_equal(st, BR_OK);
        if (n != ne || (n && memcmp(ids, expect, n * sizeof *ids))) {
            bad_ids++;
            print_message("  line %d ids differ: %.60s\n", lines, text);
            print_ids("expected", expect, ne);
            print_ids("got     ", ids, n);
        }
        char *out = NULL;
        size_t olen = 0;
        assert_int_equal(tok_decode(tok, expect, ne, 0, &out, &olen), BR_OK);
        if (olen != strlen(decoded) || strcmp(out, decoded)) {
            bad_dec++;
            print_message("  line %d decode(ids) = '%s', expected '%s'\n", lines, out, decoded);
        }
        free(out);
        assert_int_equal(tok_decode(tok, ids, n, 0, &out, &olen), BR_OK);
        if (strcmp(out, decoded)) {
            bad_round++;
            print_message("  line %d decode(encode(text)) = '%s', expected '%s'\n", lines, out, decoded);
        }
        /* decode(encode(text)) == text whenever HF's own round trip is the identity; the one exception
         * in these files is NFC (qwen3 composes "e\u0301" into "\u00e9"), reported, not hidden. */
        if (strcmp(decoded, text)) {
            not_identity++;
            print_message("  line %d: HF round trip is not the identity (normalizer): '%s' -> '%s'\n", lines, text,
                          decoded);
        } else if (strcmp(out, text)) {
            bad_round++;
            print_message("  line %d decode(encode(text)) != text\n", lines);
        }
        free(out);
        free(ids);
        free(expect);
        cJSON_Delete(o);
    }
    print_message("%s: %d lines, %d id mismatches, %d decode mismatches, %d round-trip mismatches "
                  "(%d lines where HF itself is not the identity)\n",
                  jsonl, lines, bad_ids, bad_dec, bad_round, not_identity);
    free(data);
    assert_int_equal(lines, expect_lines);
    assert_int_equal(bad_ids, 0);
    assert_int_equal(bad_dec, 0);
    assert_int_equal(bad_round, 0);
}

static void test_qwen3_encodings(void **state) {
    (void)state;
    check_encodings(g_qwen3, BR_TEST_DATA "/tokenizers/qwen3/encodings.jsonl", 50);
}

static void test_gpt2_encodings(void **state) {
    (void)state;
    check_encodings(g_gpt2, BR_TEST_DATA "/tokenizers/gpt2/encodings.jsonl", 50);
}

/* The stories260K reference ids were made with add_special_tokens=False: they carry no BOS. */
static void test_stories_encodings(void **state) {
    (void)state;
    check_encodings(g_stories, BR_TEST_DATA "/stories260K/encodings.jsonl", 52);
}

static void test_special_ids(void **state) {
    (void)state;
    assert_int_equal(tok_vocab_size(g_stories), 512);
    assert_int_equal(tok_bos_id(g_stories), 1);
    assert_int_equal(tok_eos_id(g_stories), 2);
    assert_string_equal(tok_id_to_piece(g_stories, 13), "<0x0A>");
    assert_null(tok_id_to_piece(g_stories, 512));
    assert_int_equal(tok_bos_id(g_qwen3), -1); /* bos_token: null */
    assert_int_equal(tok_eos_id(g_qwen3), tok_piece_to_id(g_qwen3, "<|im_end|>"));
    assert_int_equal(tok_piece_to_id(g_qwen3, "<|im_end|>"), 151645);
    assert_int_equal(tok_vocab_size(g_qwen3), 151669);
    assert_int_equal(tok_bos_id(g_gpt2), 50256);
    assert_int_equal(tok_eos_id(g_gpt2), 50256);
    assert_int_equal(tok_vocab_size(g_gpt2), 50257);
    assert_string_equal(tok_id_to_piece(g_gpt2, 50256), "<|endoftext|>");
    assert_true(tok_is_special(g_gpt2, 50256));
    assert_false(tok_is_special(g_gpt2, 11));
}

static void test_add_special(void **state) {
    (void)state;
    const char *text = "Once upon a time";
    int32_t *ids = NULL, *ids2 = NULL;
    size_t n = 0, n2 = 0;
    char *out = NULL;
    size_t olen;
    /* stories260K: add_bos_token true, add_eos_token false */
    assert_int_equal(tok_encode(g_stories, text, strlen(text), 0, &ids, &n), BR_OK);
    assert_int_equal(tok_encode(g_stories, text, strlen(text), 1, &ids2, &n2), BR_OK);
    assert_int_equal(n2, n + 1);
    assert_int_equal(ids2[0], 1);
    assert_memory_equal(ids2 + 1, ids, n * sizeof *ids);
    assert_int_equal(tok_decode(g_stories, ids2, n2, 1, &out, &olen), BR_OK);
    assert_string_equal(out, text);
    free(out);
    /* HF keeps "<s>" and then strips nothing: the leading space of " Once" stays */
    assert_int_equal(tok_decode(g_stories, ids2, n2, 0, &out, &olen), BR_OK);
    assert_string_equal(out, "<s> Once upon a time");
    free(out);
    free(ids);
    free(ids2);
    /* an empty text with BOS is just BOS */
    assert_int_equal(tok_encode(g_stories, "", 0, 1, &ids, &n), BR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    /* "<s>" in the text is the BOS token (an added token, matched before normalization) */
    assert_int_equal(tok_encode(g_stories, "<s>a", 4, 0, &ids, &n), BR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 261); /* "▁a": the normalizer prepends ▁ to the text after the token */
    free(ids);
    /* qwen3 and gpt2 add nothing */
    assert_int_equal(tok_encode(g_qwen3, text, strlen(text), 1, &ids, &n), BR_OK);
    assert_int_equal(tok_encode(g_qwen3, text, strlen(text), 0, &ids2, &n2), BR_OK);
    assert_int_equal(n, n2);
    free(ids);
    free(ids2);
    assert_int_equal(tok_encode(g_gpt2, text, strlen(text), 1, &ids, &n), BR_OK);
    assert_int_equal(tok_encode(g_gpt2, text, strlen(text), 0, &ids2, &n2), BR_OK);
    assert_int_equal(n, n2);
    free(ids);
    free(ids2);
}

static void test_skip_special(void **state) {
    (void)state;
    const char *text = "<|im_start|>user\nhi<|im_end|>\n";
    int32_t *ids = NULL;
    size_t n = 0;
    char *out = NULL;
    size_t olen;
    assert_int_equal(tok_encode(g_qwen3, text, strlen(text), 0, &ids, &n), BR_OK);
    assert_int_equal(ids[0], 151644);
    assert_int_equal(tok_decode(g_qwen3, ids, n, 0, &out, &olen), BR_OK);
    assert_string_equal(out, text);
    free(out);
    assert_int_equal(tok_decode(g_qwen3, ids, n, 1, &out, &olen), BR_OK);
    assert_string_equal(out, "user\nhi\n");
    free(out);
    free(ids);
    /* bad ids are rejected, naming the position and value */
    int32_t bad[2] = {11, 151669};
    assert_int_equal(tok_decode(g_qwen3, bad, 2, 0, &out, &olen), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "ids[1] = 151669"));
    assert_null(out);
    /* a lone continuation byte decodes to U+FFFD, as HF's from_utf8_lossy */
    int32_t half[1] = {tok_piece_to_id(g_gpt2, "\xc2\xa8")}; /* byte 0xA8 */
    assert_true(half[0] >= 0);
    assert_int_equal(tok_decode(g_gpt2, half, 1, 0, &out, &olen), BR_OK);
    assert_string_equal(out, "\xEF\xBF\xBD");
    free(out);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    int32_t *ids = (int32_t *)1;
    size_t n = 1;
    const char bad1[] = "Hello\xff world";
    assert_int_equal(tok_encode(g_qwen3, bad1, sizeof bad1 - 1, 0, &ids, &n), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "byte offset 5"));
    assert_null(ids);
    assert_int_equal(n, 0);
    const char bad2[] = "ab\xc3\xa9\xe2\x82"; /* truncated 3-byte sequence at offset 4 */
    assert_int_equal(tok_encode(g_stories, bad2, sizeof bad2 - 1, 0, &ids, &n), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "byte offset 4"));
    const char bad3[] = "x\xed\xa0\x80"; /* UTF-16 surrogate */
    assert_int_equal(tok_encode(g_gpt2, bad3, sizeof bad3 - 1, 0, &ids, &n), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "byte offset 1"));
    const char bad4[] = "\xc0\x80"; /* overlong NUL */
    assert_int_equal(tok_encode(g_gpt2, bad4, sizeof bad4 - 1, 0, &ids, &n), BR_EINVAL);
    assert_non_null(strstr(br_last_error(), "byte offset 0"));
}

/* Writes `json` as DIR/tokenizer.json in a fresh temporary directory; returns the directory. */
static char *write_tokenizer(const char *json) {
    char tmpl[] = "/tmp/bitroll_tok_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return strdup(dir);
}

static void remove_tokenizer(char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void expect_load_error(const char *json, br_status want, const char *msg_part) {
    char *dir = write_tokenizer(json);
    tok_tokenizer *t = (tok_tokenizer *)1;
    br_status st = tok_load(dir, &t);
    if (st != want || !strstr(br_last_error(), msg_part))
        print_error("expected '%s', got status %d: %s\n", msg_part, st, br_last_error());
    assert_int_equal(st, want);
    assert_null(t);
    assert_non_null(strstr(br_last_error(), msg_part));
    assert_non_null(strstr(br_last_error(), "tokenizer.json"));
    remove_tokenizer(dir);
}

#define MINI_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_errors(void **state) {
    (void)state;
    expect_load_error("{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\"}}",
                      BR_EFORMAT, "pre_tokenizer type 'Metaspace' is not supported");
    expect_load_error("{" MINI_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}]}}",
                      BR_EFORMAT, "normalizer type 'NFKC' is not supported");
    expect_load_error("{" MINI_MODEL ", \"decoder\": {\"type\": \"WordPiece\"}}", BR_EFORMAT,
                      "decoder type 'WordPiece' is not supported");
    expect_load_error("{" MINI_MODEL ", \"post_processor\": {\"type\": \"RobertaProcessing\"}}", BR_EFORMAT,
                      "post_processor type 'RobertaProcessing' is not supported");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", BR_EFORMAT,
                      "model type 'Unigram' is not supported");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}", BR_EFORMAT,
                      "merges[0]: token 'c' is not in the vocab");
    expect_load_error("{" MINI_MODEL ", \"added_tokens\": [ {\"id\": 3, ", BR_EFORMAT, "malformed JSON");
    expect_load_error("", BR_EFORMAT, "malformed JSON");
    tok_tokenizer *t = (tok_tokenizer *)1;
    assert_int_equal(tok_load("/nonexistent/bitroll/tokenizer.json", &t), BR_EIO);
    assert_null(t);
    tok_free(NULL);

    /* the minimal tokenizer itself works: no normalizer, pre-tokenizer or decoder */
    char *dir = write_tokenizer("{" MINI_MODEL "}");
    assert_int_equal(tok_load(dir, &t), BR_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, "abba", 4, 1, &ids, &n), BR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 0);
    char *out = NULL;
    size_t olen;
    assert_int_equal(tok_decode(t, ids, n, 0, &out, &olen), BR_OK);
    assert_string_equal(out, "ab b a"); /* HF joins with spaces when there is no decoder */
    free(out);
    free(ids);
    tok_free(t);
    remove_tokenizer(dir);
}

/* NFC against Python's unicodedata (the generator's source): composition, canonical reordering,
 * Hangul, singletons, exclusions, blocked marks. The C code was also checked on every code point. */
static void test_nfc(void **state) {
    (void)state;
    static const char *cases[][2] = {
        {"\x65\xcc\x81", "\xc3\xa9"},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\x61\xcc\xa3\xcc\x82", "\xe1\xba\xad"},
        {"\x61\xcc\x82\xcc\xa3", "\xe1\xba\xad"},
        {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},
        {"\xe2\x84\xab", "\xc3\x85"},
        {"\x41\xcc\x8a\xcc\x81", "\xc7\xba"},
        {"\xcc\x81\x61", "\xcc\x81\x61"},
        {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"},
        {"\x71\xcc\x87\xcc\xa3", "\x71\xcc\xa3\xcc\x87"},
        {"plain ascii", "plain ascii"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tok_buf out = {0};
        assert_int_equal(tok_nfc(&out, cases[i][0], strlen(cases[i][0])), BR_OK);
        assert_int_equal(out.len, strlen(cases[i][1]));
        assert_memory_equal(out.p, cases[i][1], out.len);
        free(out.p);
    }
}

static void expect_ids(const tok_tokenizer *t, const char *text, const int32_t *want, size_t nwant) {
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, text, strlen(text), 0, &ids, &n), BR_OK);
    if (n != nwant || memcmp(ids, want, n * sizeof *ids)) {
        print_error("'%s':\n", text);
        print_ids("expected", want, nwant);
        print_ids("got     ", ids, n);
    }
    assert_int_equal(n, nwant);
    assert_memory_equal(ids, want, n * sizeof *ids);
    free(ids);
}

/* Added-token flags absent from the reference files, with HF AddedVocabulary semantics: lstrip/rstrip
 * swallow the whitespace around the token, single_word only matches between non-word characters,
 * normalized tokens are matched after the normalizer (here " " -> "▁"), and a unit with no vocab
 * entry and no unk token is dropped before merging. */
static void test_added_flags(void **state) {
    (void)state;
    char *dir = write_tokenizer(
        "{\"added_tokens\": ["
        " {\"id\": 5, \"content\": \"<m>\", \"lstrip\": true, \"rstrip\": true, \"normalized\": false, \"special\": true},"
        " {\"id\": 6, \"content\": \"w\", \"single_word\": true, \"normalized\": false},"
        " {\"id\": 8, \"content\": \"b a\", \"normalized\": true}],"
        " \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \" \": 3, \"X\": 4, \"\xe2\x96\x81\": 7},"
        " \"merges\": [\"a b\"]}}");
    tok_tokenizer *t = NULL;
    assert_int_equal(tok_load(dir, &t), BR_OK);
    assert_int_equal(tok_vocab_size(t), 9);
    expect_ids(t, "ab <m> a", (const int32_t[]){2, 5, 0}, 3);
    expect_ids(t, "awb", (const int32_t[]){2}, 1);
    expect_ids(t, "a w b", (const int32_t[]){0, 7, 6, 7, 1}, 5);
    expect_ids(t, "ab a", (const int32_t[]){0, 8}, 2);
    char *out = NULL;
    size_t olen;
    assert_int_equal(tok_decode(t, (const int32_t[]){0, 5, 1}, 3, 1, &out, &olen), BR_OK);
    assert_string_equal(out, "a b"); /* no decoder: joined with spaces; <m> skipped as special */
    free(out);
    tok_free(t);
    remove_tokenizer(dir);
}

/* A BPE vocabulary without unk token and without merges: characters it lacks encode to nothing. The first word
 * to encode to nothing used to compute NULL + 0 in the word cache (undefined behaviour, seen by UBSan). */
static void test_bpe_no_unk_no_merges(void **state) {
    (void)state;
    char *dir = write_tokenizer("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    tok_tokenizer *t = NULL;
    assert_int_equal(tok_load(dir, &t), BR_OK);
    const char *texts[3] = {"b", "bb", "zz"};
    for (int i = 0; i < 3; i++) {
        int32_t *ids = NULL;
        size_t n = 99;
        assert_int_equal(tok_encode(t, texts[i], strlen(texts[i]), 0, &ids, &n), BR_OK);
        assert_int_equal(n, 0);
        free(ids);
    }
    expect_ids(t, "ab", (const int32_t[]){0}, 1);
    tok_free(t);
    remove_tokenizer(dir);
}

/* 10 MB in one call: the word cache and the heap-based merge keep it near linear (not timed). */
static void test_large_input(void **state) {
    (void)state;
    const char *para = "The quick brown fox jumps over the lazy dog; it's 2026 and 3.14159 is pi. "
                       "Once upon a time, there was a little girl named Lily.\n";
    size_t plen = strlen(para), total = 10u << 20;
    char *big = malloc(total + 1);
    assert_non_null(big);
    for (size_t i = 0; i < total; i++) big[i] = para[i % plen];
    big[total] = 0;
    const tok_tokenizer *toks[3] = {g_gpt2, g_qwen3, g_stories};
    for (int k = 0; k < 3; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(tok_encode(toks[k], big, total, 0, &ids, &n), BR_OK);
        assert_true(n > total / 16);
        char *out = NULL;
        size_t olen = 0;
        assert_int_equal(tok_decode(toks[k], ids, n, 0, &out, &olen), BR_OK);
        assert_int_equal(olen, total);
        assert_memory_equal(out, big, total);
        free(out);
        free(ids);
    }
    free(big);
}

/* Runs a CLI entry point with stdin from `in` and stdout/stderr captured into the returned buffers. */
static int run_cli(int (*fn)(int, char **), int argc, char **argv, const char *in, size_t in_len, char **out,
                   char **err) {
    char in_path[] = "/tmp/bitroll_cli_in_XXXXXX", out_path[] = "/tmp/bitroll_cli_out_XXXXXX",
         err_path[] = "/tmp/bitroll_cli_err_XXXXXX";
    int fi = mkstemp(in_path), fo = mkstemp(out_path), fe = mkstemp(err_path);
    assert_true(fi >= 0 && fo >= 0 && fe >= 0);
    assert_int_equal(write(fi, in, in_len), (ssize_t)in_len);
    lseek(fi, 0, SEEK_SET);
    fflush(stdout);
    fflush(stderr);
    int s0 = dup(0), s1 = dup(1), s2 = dup(2);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    clearerr(stdin);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(s0, 0);
    dup2(s1, 1);
    dup2(s2, 2);
    close(s0);
    close(s1);
    close(s2);
    clearerr(stdin);
    size_t len;
    assert_int_equal(br_read_file(out_path, out, &len), BR_OK);
    assert_int_equal(br_read_file(err_path, err, &len), BR_OK);
    close(fi);
    close(fo);
    close(fe);
    unlink(in_path);
    unlink(out_path);
    unlink(err_path);
    return rc;
}

static void test_cli(void **state) {
    (void)state;
    char *out = NULL, *err = NULL;
    char *tok_args[] = {"tokenize", "--tokenizer", STORIES_DIR, "--add-special-tokens"};
    const char *text = "Once upon a time\n"; /* the trailing newline is part of the input */
    assert_int_equal(run_cli(cli_tokenize_main, 4, tok_args, text, strlen(text), &out, &err), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(g_stories, text, strlen(text), 1, &ids, &n), BR_OK);
    char expect[1024] = "";
    for (size_t i = 0; i < n; i++) snprintf(expect + strlen(expect), sizeof expect - strlen(expect), i ? " %d" : "%d", ids[i]);
    strcat(expect, "\n");
    assert_string_equal(out, expect);
    assert_string_equal(err, "");
    free(out);
    free(err);

    char *detok_args[] = {"detokenize", "--tokenizer", STORIES_DIR, "--skip-special-tokens"};
    assert_int_equal(run_cli(cli_detokenize_main, 4, detok_args, expect, strlen(expect), &out, &err), 0);
    assert_string_equal(out, text);
    free(out);
    free(err);
    free(ids);

    /* errors: exit 2 with "bitroll <verb>: <message>" */
    const char bad[] = "a\xff";
    assert_int_equal(run_cli(cli_tokenize_main, 3, tok_args, bad, 2, &out, &err), 2);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "bitroll tokenize: tokenizer input: invalid UTF-8 at byte offset 1"));
    free(out);
    free(err);
    assert_int_equal(run_cli(cli_detokenize_main, 3, detok_args, "1 2 x3", 6, &out, &err), 2);
    assert_non_null(strstr(err, "bitroll detokenize: stdin: token 2 'x3'"));
    free(out);
    free(err);
    assert_int_equal(run_cli(cli_detokenize_main, 3, detok_args, "1 99999", 7, &out, &err), 2);
    assert_non_null(strstr(err, "ids[1] = 99999"));
    free(out);
    free(err);
    char *no_tok[] = {"tokenize"};
    assert_int_equal(run_cli(cli_tokenize_main, 1, no_tok, "", 0, &out, &err), 2);
    assert_non_null(strstr(err, "bitroll tokenize: --tokenizer PATH is required"));
    free(out);
    free(err);
    char *help[] = {"detokenize", "--help"};
    assert_int_equal(run_cli(cli_detokenize_main, 2, help, "", 0, &out, &err), 0);
    assert_non_null(strstr(out, "usage: bitroll detokenize"));
    free(out);
    free(err);
    char *missing[] = {"tokenize", "--tokenizer", "/nonexistent/tok"};
    assert_int_equal(run_cli(cli_tokenize_main, 3, missing, "", 0, &out, &err), 2);
    assert_non_null(strstr(err, "bitroll tokenize: "));
    free(out);
    free(err);
}

/* The ids of an "ids" array, as ints (the expected values come from the HF reference files). */
static int ids_equal(const cJSON *a, const cJSON *b) {
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b) || cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return 0;
    for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next)
        if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || x->valueint != y->valueint) return 0;
    return 1;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* --jsonl and JSON lists, checked against a reference encodings.jsonl (HF tokenizers' text -> ids -> decoded,
 * add_special_tokens=False): the ids and texts the CLI prints are the file's, not the code's own. */
static void check_cli_jsonl(const char *dir, const char *jsonl, int expect_lines) {
    char *file = NULL, *out = NULL, *err = NULL;
    size_t flen;
    assert_int_equal(br_read_file(jsonl, &file, &flen), BR_OK);
    char *tok_args[] = {"tokenize", "--tokenizer", (char *)dir, "--jsonl"};
    char *detok_args[] = {"detokenize", "--tokenizer", (char *)dir, "--jsonl"};
    char *list_args[] = {"detokenize", "--tokenizer", (char *)dir};

    /* 1. the reference file itself: "ids" is replaced in place by the same ids, every other byte echoed */
    assert_int_equal(run_cli(cli_tokenize_main, 4, tok_args, file, flen, &out, &err), 0);
    assert_string_equal(err, "");
    assert_string_equal(out, file);
    free(out);
    free(err);

    /* 2. records without ids, other fields first, blank lines between: ids added, "n" and "text" kept */
    char *in = NULL;
    size_t in_len = 0, in_cap = 0;
    cJSON **ref = calloc((size_t)expect_lines, sizeof *ref);
    assert_non_null(ref);
    int lines = 0;
    for (char *line = file, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        char save = line[ll];
        line[ll] = 0;
        assert_true(lines < expect_lines);
        ref[lines] = cJSON_Parse(line);
        line[ll] = save;
        assert_non_null(ref[lines]);
        cJSON *rec = cJSON_CreateObject();
        cJSON_AddNumberToObject(rec, "n", lines);
        cJSON_AddStringToObject(rec, "text", jstr(ref[lines], "text"));
        char *js = cJSON_PrintUnformatted(rec);
        size_t jl = strlen(js);
        if (in_len + jl + 3 > in_cap) {
            in_cap = 2 * (in_len + jl + 3);
            in = realloc(in, in_cap);
            assert_non_null(in);
        }
        memcpy(in + in_len, js, jl);
        in_len += jl;
        memcpy(in + in_len, lines % 7 == 3 ? "\n\n" : "\n", lines % 7 == 3 ? 2 : 1);
        in_len += lines % 7 == 3 ? 2 : 1;
        free(js);
        cJSON_Delete(rec);
        lines++;
    }
    assert_int_equal(lines, expect_lines);
    assert_int_equal(run_cli(cli_tokenize_main, 4, tok_args, in, in_len, &out, &err), 0);
    assert_string_equal(err, "");
    int got = 0, bad = 0;
    for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : NULL, got++) {
        nl = strchr(line, '\n');
        assert_non_null(nl); /* one record per line, each ended by a newline */
        *nl = 0;
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        assert_true(got < lines);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "n");
        assert_true(cJSON_IsNumber(n) && n->valueint == got);
        assert_string_equal(jstr(o, "text"), jstr(ref[got], "text"));
        if (!ids_equal(cJSON_GetObjectItemCaseSensitive(o, "ids"), cJSON_GetObjectItemCaseSensitive(ref[got], "ids"))) {
            bad++;
            print_message("  %s line %d: ids differ: %s\n", jsonl, got + 1, line);
        }
        cJSON_Delete(o);
    }
    assert_int_equal(got, lines);
    assert_int_equal(bad, 0);
    free(out);
    free(err);
    free(in);

    /* 3. detokenize --jsonl on the reference file: "text" becomes the reference's "decoded"; where HF's round
     * trip is the identity (all lines but an NFC one), the output is the input byte for byte */
    assert_int_equal(run_cli(cli_detokenize_main, 4, detok_args, file, flen, &out, &err), 0);
    assert_string_equal(err, "");
    got = 0;
    int same = 0;
    for (char *line = out, *nl, *fl = file; line && *line; line = nl ? nl + 1 : NULL, got++) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        char *fnl = strchr(fl, '\n');
        *fnl = 0;
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        assert_true(got < lines);
        assert_string_equal(jstr(o, "text"), jstr(ref[got], "decoded"));
        assert_string_equal(jstr(o, "decoded"), jstr(ref[got], "decoded"));
        assert_true(ids_equal(cJSON_GetObjectItemCaseSensitive(o, "ids"), cJSON_GetObjectItemCaseSensitive(ref[got], "ids")));
        if (!strcmp(jstr(ref[got], "text"), jstr(ref[got], "decoded"))) {
            assert_string_equal(line, fl);
            same++;
        }
        *fnl = '\n';
        fl = fnl + 1;
        cJSON_Delete(o);
    }
    assert_int_equal(got, lines);
    assert_true(same >= lines - 1);
    free(out);
    free(err);

    /* 4. a JSON list on stdin, without --jsonl: the decoded text, exactly (every 7th line: each call loads
     * the tokenizer again) */
    for (int i = 0; i < lines; i += 7) {
        char *list = cJSON_Print(cJSON_GetObjectItemCaseSensitive(ref[i], "ids"));
        assert_non_null(list);
        assert_int_equal(run_cli(cli_detokenize_main, 3, list_args, list, strlen(list), &out, &err), 0);
        assert_string_equal(err, "");
        assert_string_equal(out, jstr(ref[i], "decoded"));
        free(out);
        free(err);
        free(list);
    }
    for (int i = 0; i < lines; i++) cJSON_Delete(ref[i]);
    free(ref);
    free(file);
}

static void test_cli_jsonl(void **state) {
    (void)state;
    check_cli_jsonl(QWEN3_DIR, QWEN3_DIR "/encodings.jsonl", 50);
    check_cli_jsonl(STORIES_DIR, BR_TEST_DATA "/stories260K/encodings.jsonl", 52);

    /* --add-special-tokens applies per record; "Hello, world!" is line 1 of stories260K's reference file */
    char *out = NULL, *err = NULL;
    char *tok_special[] = {"tokenize", "--tokenizer", STORIES_DIR, "--jsonl", "--add-special-tokens"};
    const char *rec = "{\"text\": \"Hello, world!\", \"meta\": {\"ids\": [7], \"s\": \"}\"}, \"big\": 12345678901234567890}\n";
    assert_int_equal(run_cli(cli_tokenize_main, 5, tok_special, rec, strlen(rec), &out, &err), 0);
    assert_string_equal(out, "{\"text\": \"Hello, world!\", \"meta\": {\"ids\": [7], \"s\": \"}\"}, \"big\": 12345678901234567890, "
                             "\"ids\": [1, 346, 306, 414, 432, 263, 304, 341, 443]}\n");
    free(out);
    free(err);
    /* --skip-special-tokens drops the BOS; an empty object gets the field; a CRLF line ends like the others */
    char *detok_skip[] = {"detokenize", "--tokenizer", STORIES_DIR, "--jsonl", "--skip-special-tokens"};
    const char *recs = "{\"ids\":[1, 346, 306, 414, 432, 263, 304, 341, 443]}\r\n";
    assert_int_equal(run_cli(cli_detokenize_main, 5, detok_skip, recs, strlen(recs), &out, &err), 0);
    assert_string_equal(out, "{\"ids\":[1, 346, 306, 414, 432, 263, 304, 341, 443], \"text\": \"Hello, world!\"}\n");
    free(out);
    free(err);
    char *tok_args[] = {"tokenize", "--tokenizer", STORIES_DIR, "--jsonl"};
    assert_int_equal(run_cli(cli_tokenize_main, 4, tok_args, "{}", 2, &out, &err), 2);
    assert_non_null(strstr(err, "line 1: field 'text' missing"));
    free(out);
    free(err);

    /* errors name the line (blank lines counted) and the field, exit 2, and print nothing */
    static const struct {
        int detok;
        const char *in, *msg;
    } bad[] = {
        {0, "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n", "bitroll tokenize: stdin: line 3: field 'text' missing"},
        {0, "{\"text\": \"a\"}\n{\"text\": 3}\n", "bitroll tokenize: stdin: line 2: field 'text': expected a string, got a number"},
        {0, "{\"text\": \"a\"}\n{\"text\": \"b\"\n", "bitroll tokenize: stdin: line 2: malformed JSON"},
        {0, "[\"a\"]\n", "bitroll tokenize: stdin: line 1: expected a JSON object, got an array"},
        {0, "{\"text\": \"a\xff\"}\n", "bitroll tokenize: stdin: line 1: field 'text': tokenizer input: invalid UTF-8"},
        {0, "{\"text\": \"a\", \"ids\": [], \"ids\": [1]}\n", "stdin: line 1: field 'ids' appears twice"},
        {1, "{\"ids\": [1, 2]}\n{\"ids\": [1, \"x\"]}\n",
         "bitroll detokenize: stdin: line 2: field 'ids': element 1: expected a non-negative integer token id, got a string"},
        {1, "{\"ids\": [3.5]}\n", "stdin: line 1: field 'ids': element 0 = 3.5: expected a non-negative integer token id"},
        {1, "{\"ids\": 5}\n", "stdin: line 1: field 'ids': expected an array of token ids, got a number"},
        {1, "\n{\"ids\": [1, 99999]}\n", "stdin: line 2: field 'ids': tokenizer decode: ids[1] = 99999"},
        {1, "{\"text\": \"a\"}\n", "stdin: line 1: field 'ids' missing"},
    };
    char *detok_args[] = {"detokenize", "--tokenizer", STORIES_DIR, "--jsonl"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = bad[i].detok ? run_cli(cli_detokenize_main, 4, detok_args, bad[i].in, strlen(bad[i].in), &out, &err)
                              : run_cli(cli_tokenize_main, 4, tok_args, bad[i].in, strlen(bad[i].in), &out, &err);
        if (rc != 2 || !strstr(err, bad[i].msg) || *out)
            fail_msg("case %zu: exit %d, stdout '%s', stderr '%s', expected exit 2 and '%s'", i, rc, out, err, bad[i].msg);
        free(out);
        free(err);
    }

    /* JSON lists without --jsonl: errors name the element; a JSON record asks for --jsonl */
    char *list_args[] = {"detokenize", "--tokenizer", STORIES_DIR};
    static const struct {
        const char *in, *msg;
    } lbad[] = {
        {"[1, -1]", "bitroll detokenize: stdin: JSON list: element 1 = -1: expected a non-negative integer token id"},
        {"[1, 2", "bitroll detokenize: stdin: malformed JSON list"},
        {"  [1, [2]]", "stdin: JSON list: element 1: expected a non-negative integer token id, got an array"},
        {"[1, 99999]", "ids[1] = 99999"},
        {"{\"ids\": [1]}", "need --jsonl"},
    };
    for (size_t i = 0; i < sizeof lbad / sizeof lbad[0]; i++) {
        int rc = run_cli(cli_detokenize_main, 3, list_args, lbad[i].in, strlen(lbad[i].in), &out, &err);
        if (rc != 2 || !strstr(err, lbad[i].msg) || *out)
            fail_msg("list case %zu: exit %d, stderr '%s', expected exit 2 and '%s'", i, rc, err, lbad[i].msg);
        free(out);
        free(err);
    }
    assert_int_equal(run_cli(cli_detokenize_main, 3, list_args, " [ ]\n", 5, &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    free(err);

    char *help[] = {"tokenize", "--help"};
    assert_int_equal(run_cli(cli_tokenize_main, 2, help, "", 0, &out, &err), 0);
    assert_non_null(strstr(out, "--jsonl"));
    free(out);
    free(err);
    help[0] = "detokenize";
    assert_int_equal(run_cli(cli_detokenize_main, 2, help, "", 0, &out, &err), 0);
    assert_non_null(strstr(out, "--jsonl"));
    assert_non_null(strstr(out, "[1, 2, 3]"));
    free(out);
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_encodings), cmocka_unit_test(test_gpt2_encodings),
        cmocka_unit_test(test_stories_encodings), cmocka_unit_test(test_special_ids),
        cmocka_unit_test(test_add_special), cmocka_unit_test(test_skip_special),
        cmocka_unit_test(test_invalid_utf8), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nfc), cmocka_unit_test(test_added_flags), cmocka_unit_test(test_bpe_no_unk_no_merges),
        cmocka_unit_test(test_large_input), cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_jsonl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
