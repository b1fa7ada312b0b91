"""Template-constrained decoding (paper 3.1.2): the template's fixed text is forced and only the
numbers are generated, each restricted to its field's valid range.

A field's valid integers are written as token sequences by the model's own tokenizer and stored
as a trie, so the same code serves a tokenizer that writes every integer as one token (the tiny
preset) and one that writes sign and digit tokens (large InternVL checkpoints). At a node that
completes a number but could also continue (``1`` vs ``12``), the first token of the following
fixed text is allowed too and ends the number.

Every choice is drawn from ``constrained_log_probs``: the logits restricted to the allowed
tokens, divided by the temperature and cut to the top k. PPO recomputes the same quantity from a
teacher-forced pass (``Actor.evaluate``), so the two agree up to floating point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlac.actor.template import ActionTemplate, Field, TemplateError
from vlac.utils.imports import require

torch = require("torch", extra="model")


def constrained_log_probs(logits: "torch.Tensor", allowed: "torch.Tensor", temperature: float = 1.0,
                          top_k: int = 0) -> "torch.Tensor":
    """Log-probabilities over ``allowed`` token ids (A,) from one position's logits (V,): softmax
    of the allowed logits / temperature, with all but the top ``top_k`` of them excluded."""
    z = logits.float().index_select(-1, allowed) / max(temperature, 1e-6)
    if 0 < top_k < z.shape[-1]:
        kth = torch.topk(z, top_k).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    return torch.log_softmax(z, dim=-1)


class NumberTrie:
    """Token sequences of every integer lo..hi of one field."""

    def __init__(self, tokenizer, f: Field):
        self.children: list[dict[int, int]] = [{}]
        self.value: list[int | None] = [None]
        self.spelling: dict[int, list[int]] = {}
        unk = tokenizer.unk_token_id
        for n in range(f.lo, f.hi + 1):
            ids = tokenizer.encode(str(n), add_special_tokens=False)
            if not ids or (unk is not None and unk in ids):
                raise TemplateError(f"the tokenizer cannot write {n} (field {f.name}); it lacks number tokens")
            node = 0
            for t in ids:
                nxt = self.children[node].get(t)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][t] = nxt
                    self.children.append({})
                    self.value.append(None)
                node = nxt
            if self.value[node] is not None:
                raise TemplateError(f"the tokenizer writes {self.value[node]} and {n} alike")
            self.value[node] = n
            self.spelling[n] = list(ids)
        self.single_token = all(not self.children[c] for c in self.children[0].values())


@dataclass
class DecodePlan:
    """A template laid out as token ids for one tokenizer."""

    template: ActionTemplate
    pieces: list[list[int]]  # fixed text before field k (k < n) and after the last field (k = n)
    tries: list[NumberTrie]
    end_id: int

    @classmethod
    def build(cls, tokenizer, template: ActionTemplate) -> "DecodePlan":
        pieces = [tokenizer.encode(p, add_special_tokens=False) if p.strip() else [] for p in template.pieces]
        tries = [NumberTrie(tokenizer, f) for f in template.fields]
        plan = cls(template, pieces, tries, tokenizer.eos_token_id)
        for k, trie in enumerate(tries):  # the token that ends a number must not also continue it
            term = plan.terminator(k)
            if any(term in ch for ch in trie.children):
                raise TemplateError(f"the text after field {template.fields[k].name} starts with a token that "
                                    f"could continue the number; add a separator to template {template.spec!r}")
        return plan

    def terminator(self, k: int) -> int:
        nxt = self.pieces[k + 1]
        return nxt[0] if nxt else self.end_id

    def answer_ids(self, ints: list[int]) -> list[int]:
        """The token ids decoding produces for these integers (what training teaches)."""
        ids = list(self.pieces[0])
        for k, n in enumerate(ints):
            spelling = self.tries[k].spelling.get(int(n))
            if spelling is None:
                f = self.template.fields[k]
                raise TemplateError(f"{n} is outside field {f.name}'s range {f.lo}..{f.hi}")
            ids += spelling + self.pieces[k + 1]
        return ids


@dataclass
class RowState:
    """Where one batch row is in the template while decoding."""

    plan: DecodePlan
    field_k: int = 0
    node: int = 0
    pending: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # every action token fed so far
    ints: list[int] = field(default_factory=list)
    choice_index: list[int] = field(default_factory=list)  # index into tokens of each choice
    allowed: list[list[int]] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    complete: bool = False

    def __post_init__(self):
        self.pending = list(self.plan.pieces[0])

    def allowed_now(self) -> list[int]:
        trie = self.plan.tries[self.field_k]
        ids = list(trie.children[self.node])
        if trie.value[self.node] is not None:
            ids.append(self.plan.terminator(self.field_k))
        return ids

    def nearest_to_mean(self, allowed: list[int], probs) -> int:
        """Index into ``allowed`` (one token per number) of the number nearest the expected value
        under ``probs``, among the numbers ``probs`` allows (top-k); a tie goes to the one nearer 0."""
        trie = self.plan.tries[self.field_k]
        values = [trie.value[trie.children[self.node][t]] for t in allowed]
        expected = sum(p * v for p, v in zip(probs, values))
        return min((i for i in range(len(values)) if probs[i] > 0),
                   key=lambda i: (abs(values[i] - expected), abs(values[i])))

    def choose(self, token: int, allowed: list[int], log_prob: float) -> None:
        self.choice_index.append(len(self.tokens) + len(self.pending))
        self.allowed.append(allowed)
        self.log_probs.append(log_prob)
        trie = self.plan.tries[self.field_k]
        child = trie.children[self.node].get(token)
        if child is not None:
            self.pending.append(token)
            self.node = child
            if trie.children[child]:
                return  # the number may go on
            value = trie.value[child]
            nxt = list(self.plan.pieces[self.field_k + 1])
        else:  # the terminator: the number ends here and the fixed text follows
            value = trie.value[self.node]
            nxt = list(self.plan.pieces[self.field_k + 1])
            if not nxt:  # a template ending in a number: the end token closes it
                nxt = [self.plan.end_id]
        self.ints.append(int(value))
        self.pending += nxt
        self.field_k += 1
        self.node = 0
        if self.field_k == len(self.plan.tries):
            self.complete = True
