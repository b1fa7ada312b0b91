"""The tiny preset's tokenizer: word level, trained offline on the project's prompts, task
vocabulary and every integer in [-1000, 1000], so a progress answer or an action coordinate is
one token. Saved with each checkpoint (``tokenizer.json``).

    >>> tok = train_tokenizer(["open the drawer", "push the puck to the goal"])
    >>> tok("x: -47mm")["input_ids"]          # 'x', ':', '-47', 'mm'

Large checkpoints bring their own tokenizer (numbers as sign and digit tokens); everything that
reads numbers handles both kinds.
"""

from __future__ import annotations

from vlac.utils.imports import require

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
PAD, UNK = "<pad>", "<unk>"
SPECIAL_TOKENS = [PAD, UNK, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT]
NUMBER_RANGE = (-1000, 1000)
# Signed integers stay whole; words; any other single symbol.
_PRETOKENIZE = r"-?\d+|[^\W\d_]+|[^\w\s]|_"


def _action_words() -> list[str]:
    return ["x: y: z: roll: pitch: yaw: open: mm degrees { } , state action"]


def train_tokenizer(task_texts: list[str]):
    """Train the word-level tokenizer on prompts + ``task_texts`` + the integers."""
    tokenizers = require("tokenizers", extra="model")
    transformers = require("transformers", extra="model")
    from vlac.data.tasks import TASKS
    from vlac.model.prompts import prompt_corpus

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token=UNK))
    tok.normalizer = tokenizers.normalizers.Sequence([tokenizers.normalizers.NFKC(),
                                                      tokenizers.normalizers.Lowercase()])
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.WhitespaceSplit(),
        tokenizers.pre_tokenizers.Split(tokenizers.Regex(_PRETOKENIZE), behavior="isolated")])
    corpus = list(prompt_corpus()) + _action_words() + list(task_texts)
    for spec in TASKS.values():
        corpus += [spec.instruction, *spec.paraphrases]
    lo, hi = NUMBER_RANGE
    corpus.append(" ".join(str(n) for n in range(lo, hi + 1)))
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator(corpus, trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=IM_END,
        extra_special_tokens={"img_start": IMG_START, "img_end": IMG_END, "img_context": IMG_CONTEXT,
                              "im_start": IM_START},
        padding_side="right")


def number_token_ids(tokenizer, lo: int, hi: int) -> list[int] | None:
    """Token ids of the integers lo..hi when each is a single token, else None (digit tokenizer)."""
    ids = []
    for n in range(lo, hi + 1):
        enc = tokenizer.encode(str(n), add_special_tokens=False)
        if len(enc) != 1 or enc[0] == tokenizer.unk_token_id:
            return None
        ids.append(enc[0])
    return ids


def _unknown(backend, text: str, known) -> list[str]:
    """Words of ``text`` (as the backend normalises and splits it) not in ``known``, once each."""
    norm = backend.normalizer.normalize_str(text) if backend.normalizer else text
    out: list[str] = []
    for word, _ in backend.pre_tokenizer.pre_tokenize_str(norm):
        if word not in known and word not in out:
            out.append(word)
    return out


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` a word-level tokenizer reads as unknown (in order, once each); none
    for tokenizers that spell any word."""
    tokenizers = require("tokenizers", extra="model")
    backend = tokenizer.backend_tokenizer
    if not isinstance(backend.model, tokenizers.models.WordLevel):
        return []
    return _unknown(backend, text, backend.get_vocab(with_added_tokens=True))


def extend_vocabulary(tokenizer, texts: list[str]) -> list[str]:
    """Add the words of ``texts`` that a word-level tokenizer would read as unknown (e.g. a
    critic checkpoint's tokenizer meeting the actor prompt); existing ids are unchanged. Returns
    the added words (none for other tokenizers, which spell any word). Resize the model's
    embeddings after (``VLM.extend_vocabulary`` does both)."""
    tokenizers = require("tokenizers", extra="model")
    backend = tokenizer.backend_tokenizer
    if not isinstance(backend.model, tokenizers.models.WordLevel):
        return []
    vocab = backend.get_vocab(with_added_tokens=False)
    new: list[str] = []
    for text in texts:
        new += [w for w in _unknown(backend, text, vocab) if w not in new]
    if new:
        size = backend.get_vocab_size(with_added_tokens=True)
        vocab.update({w: size + k for k, w in enumerate(new)})
        backend.model = tokenizers.models.WordLevel(vocab, unk_token=UNK)
    return new
