"""Verifiable rewards for examples/grpo/grpo.py: functions of a ``bitroll.Rollouts`` returning one float per sample
(float64 numpy array, in the file's sample order). Pure functions of the file's tokens / texts, so deterministic.

- ``text_reward``: for stories260K (a model with a tokenizer, so the rollouts file has ``completion_text``): the
  story uses a target word and ends with a full stop within the token budget, with partial credit so that a tiny
  model's samples give a dense enough signal to learn from in ~50 steps.
- ``token_reward``: for random-weight models (no text): the fraction of completion tokens in a fixed target id set.
"""

import re

import numpy as np

__all__ = ["text_reward", "token_reward", "target_ids", "REWARDS"]


def _score_text(text, finish_reason, word, min_words=8):
    """One completion's text reward in [0, 2]:

    - 1.0 when ``word`` occurs as a word (case-insensitive); else 0.25 per word starting with its first three
      letters (e.g. "hap" for happy: "happily", "happen"), at most 0.5: the partial credit;
    - 0.5 when the completion ends with a full stop closing a word ("... park."; trailing whitespace ignored); else
      0.25 * (the share of the text up to its last word-closing full stop), so a story that closes a sentence
      late gets more than one that never does;
    - 0.5 when the sample stopped on the stop token within the budget (finish_reason 0);
    - all of it scaled by min(1, words / min_words) and by min(1, 2 * distinct words / words): a completion of a
      few words or of punctuation alone, or one word repeated ("Lily Lily Lily."), the reward hacks a tiny model
      finds first, earns little.
    """
    t = text or ""
    low = t.lower()
    words = re.findall(r"[a-z]+", low)
    r = 0.0
    if re.search(r"\b" + re.escape(word.lower()) + r"\b", low):
        r += 1.0
    else:
        stem = word.lower()[:3]
        r += min(0.5, 0.25 * len(re.findall(r"\b" + re.escape(stem) + r"\w*", low)))
    s = t.rstrip()
    if re.search(r"[a-z]\.$", s.lower()):
        r += 0.5
    else:
        ends = [m.end() for m in re.finditer(r"[a-z]\.", s.lower())]
        if ends:
            r += 0.25 * ends[-1] / len(s)
    if finish_reason == 0:
        r += 0.5
    if not words:
        return 0.0
    return r * min(1.0, len(words) / min_words) * min(1.0, 2.0 * len(set(words)) / len(words))


def text_reward(rollouts, word="happy"):
    """Per-sample text reward (see ``_score_text``) of a rollouts file with ``completion_text`` (a model with a
    tokenizer). Raises ValueError when the file has no texts."""
    texts = rollouts.completion_text
    if texts is None:
        raise ValueError("text_reward: the rollouts file has no completion_text (the model has no tokenizer: "
                         "use --reward tokens)")
    return np.array([_score_text(str(texts[i]), int(rollouts.finish_reason[i]), word) for i in range(rollouts.n)],
                    dtype=np.float64)


def target_ids(vocab_size, modulus=8, first=3):
    """The fixed target id set of ``token_reward``: ids >= first (past the special ids) divisible by modulus."""
    return np.arange(first, vocab_size, dtype=np.int64)[np.arange(first, vocab_size) % modulus == 0]


def token_reward(rollouts, vocab_size, modulus=8):
    """Per-sample synthetic reward for models without text (random weights): the fraction of the sample's
    completion tokens that are in ``target_ids(vocab_size, modulus)`` (0 for an empty completion). A uniform
    sampler scores about 1/modulus; the policy can raise it by shifting mass onto the target ids."""
    ids = target_ids(vocab_size, modulus)
    hit = np.isin(rollouts.completion_tokens.astype(np.int64), ids).astype(np.float64)
    off = rollouts.completion_offsets.astype(np.int64)
    out = np.zeros(rollouts.n, dtype=np.float64)
    for i in range(rollouts.n):
        a, b = off[i], off[i + 1]
        out[i] = hit[a:b].mean() if b > a else 0.0
    return out


REWARDS = ("text", "tokens")
