# Text in, text out with the bundled stories260K tokenizer: tokenize/detokenize verbs, "prompt" text in the
# prompts file, prompt_text/completion_text in the rollouts file, greedy continuation of "Once upon a time"
# equal to llama2.c's greedy story from BOS (whose first 4 tokens are exactly "Once upon a time").
source "$(dirname "$0")/lib/common.bash" "$@"
ids=$(printf 'Hello, world!' | "$BITROLL" tokenize --tokenizer "$MODEL")
[ "$ids" = "346 306 414 432 263 304 341 443" ] || fail "tokenize gave '$ids'"
ids=$(printf 'Hello, world!' | "$BITROLL" tokenize --tokenizer "$MODEL/tokenizer.json" --add-special-tokens)
[ "$ids" = "1 346 306 414 432 263 304 341 443" ] || fail "tokenize --add-special-tokens gave '$ids'"
text=$(echo "346 306 414 432 263 304 341 443" | "$BITROLL" detokenize --tokenizer "$MODEL")
[ "$text" = "Hello, world!" ] || fail "detokenize gave '$text'"
expect_exit 2 "tokenizer" "$BITROLL" tokenize --tokenizer "$TMP/nothing-here"

echo '{"prompt": "Once upon a time"}' >"$TMP/p.jsonl"
"$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/g.h5" --temperature 0 \
    --max-new-tokens 60 --quiet
"$BITROLL" show "$TMP/g.h5" | tee "$TMP/show.txt"
"$BITROLL" show --ids "$TMP/g.h5" | grep -q "prompt: 1 403 407 261 378" || fail "prompt ids (BOS + text)"
# prompt + completion text is a prefix of llama2.c's greedy story
python3 - "$TMP/show.txt" "$DATA/stories260K/greedy_from_bos.txt" <<'PY' || fail "greedy text differs from llama2.c's"
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
prompt = next(l for l in lines if l.startswith("prompt: "))[len("prompt: "):]
start = lines.index(next(l for l in lines if l.startswith("completion: ")))
completion = "\n".join(lines[start:])[len("completion: "):].rstrip("\n")
story = open(sys.argv[2], encoding="utf-8").read()
text = prompt + completion
assert prompt == "Once upon a time", repr(prompt)
assert len(completion) > 100, repr(completion)
assert story.startswith(text), (text, story[:len(text)])
print("greedy text matches llama2.c for", len(text), "characters")
PY
# text prompts without a tokenizer: clear error naming the line
mkdir -p "$TMP/notok"
cp "$MODEL/config.json" "$MODEL/model.safetensors" "$TMP/notok/"
expect_exit 2 "line 1" "$BITROLL" generate --model "$TMP/notok" --prompts "$TMP/p.jsonl" --out "$TMP/x.h5"
# score/verify work with texts present
"$BITROLL" score --model "$MODEL" --rollouts "$TMP/g.h5" --out "$TMP/s.h5" --quiet
"$BITROLL" verify "$TMP/g.h5" "$TMP/s.h5" >/dev/null || fail "verify"
# full_text = prompt + completion ids decoded at once. "Once upon a time," makes the greedy completion start
# with "▁there": completion_text alone loses that space, full_text keeps it, and full_text is a prefix of
# llama2.c's greedy story.
echo '{"prompt": "Once upon a time,"}' >"$TMP/pc.jsonl"
"$BITROLL" generate --model "$MODEL" --prompts "$TMP/pc.jsonl" --out "$TMP/gc.h5" --temperature 0 \
    --max-new-tokens 40 --quiet
python3 - "$TMP/gc.h5" "$DATA/stories260K/greedy_from_bos.txt" <<'PY' || fail "full_text"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f["samples"]
    prompt, completion, full = (s[k].asstr()[0] for k in ("prompt_text", "completion_text", "full_text"))
story = open(sys.argv[2], encoding="utf-8").read()
assert prompt == "Once upon a time,", repr(prompt)
assert completion.startswith("there was"), repr(completion)
assert full == "Once upon a time, " + completion, (full, completion)
assert prompt + completion != full
assert story.startswith(full), (full, story[:len(full)])
print("full_text keeps the space that prompt_text + completion_text drops:", repr(full[:30]))
PY
echo "PASS"
