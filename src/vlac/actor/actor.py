"""The VLAC actor (paper 3.1.2, Fig. 3): the same vision-language model, switched by the action
prompt, writes the robot's action as text under a template; a linear value head reads the hidden
state at the end of the decoded action.

    >>> actor = Actor.load()                                   # the built-in tiny actor
    >>> [s] = actor.act([ActorInput(image, state, "push the puck to the goal")])
    >>> s.action, s.log_prob, s.value                          # (4,) mm + open, float, float
    >>> out = actor.evaluate([inp], [s])                       # teacher-forced: same log-probs, with grad

One checkpoint folder holds the model, its tokenizer, the templates (``vlac_config.json``) and
``value_head.safetensors``; it can serve the critic too when trained on both roles.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlac.actor.decoding import DecodePlan, RowState, constrained_log_probs
from vlac.actor.template import ActionTemplate, TemplateError, get_template
from vlac.model import BUILTIN, CheckpointError, model_path
from vlac.model import prompts as P
from vlac.model.preprocess import VLAC_CONFIG, read_preprocess
from vlac.model.vlm import VLM, Prompt
from vlac.utils.imports import require

torch = require("torch", extra="model")

DEFAULT_CHECKPOINT = BUILTIN["actor"]
VALUE_HEAD = "value_head.safetensors"


@dataclass
class ActorInput:
    """What the actor sees at one step."""

    image: np.ndarray
    """One camera image, HxWx3 uint8 RGB."""
    state: np.ndarray
    """End-effector state in the state template's units (the simulated arm: x, y, z mm; open 0..1)."""
    task: str
    history: list = field(default_factory=list)
    """The last few actions, oldest first (used when the checkpoint was trained with history)."""


@dataclass
class ActionSample:
    """One decoded action and everything PPO needs to re-score it."""

    action: np.ndarray  # (dim,) in the template's physical units
    text: str
    tokens: list[int]  # every token of the action as fed to the model (forced and chosen)
    choice_index: list[int]  # positions in ``tokens`` that were chosen (not forced)
    allowed: list[list[int]]  # the allowed token ids at each choice
    token_log_probs: np.ndarray  # (n_choices,)
    log_prob: float
    value: float

    def to_dict(self) -> dict:
        return {"action": self.action.tolist(), "text": self.text, "tokens": self.tokens,
                "choice_index": self.choice_index, "allowed": self.allowed,
                "token_log_probs": self.token_log_probs.tolist(), "log_prob": self.log_prob, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> "ActionSample":
        return cls(np.asarray(d["action"], np.float32), d["text"], list(d["tokens"]), list(d["choice_index"]),
                   [list(a) for a in d["allowed"]], np.asarray(d["token_log_probs"], np.float64),
                   float(d["log_prob"]), float(d["value"]))


class Actor:
    """Model + action/state templates + value head."""

    def __init__(self, vlm: VLM, action_template: str = "sim-arm", state_template: str = "sim-arm-state",
                 history: int = 0, value_head=None):
        self.vlm = vlm
        self.action_template: ActionTemplate = get_template(action_template)
        self.state_template: ActionTemplate = get_template(state_template)
        if history < 0:
            raise ValueError(f"history must be >= 0 actions, got {history}")
        self.history = history
        # A word-level tokenizer (e.g. a critic checkpoint's) may not know the actor prompt's words.
        sample = P.action_prompt("task", self.state_template.ints_to_text([f.lo for f in self.state_template.fields]),
                                 ["action"])
        added = vlm.extend_vocabulary([sample, *self.action_template.pieces, *self.state_template.pieces])
        if added:
            print(f"actor: added {len(added)} prompt words to the tokenizer ({', '.join(added[:6])}...)",
                  file=sys.stderr)
        self.plan = DecodePlan.build(vlm.tokenizer, self.action_template)
        hidden = vlm.model.config.get_text_config().hidden_size
        self.value_head_created = value_head is None
        if value_head is None:
            value_head = torch.nn.Linear(hidden, 1)
            torch.nn.init.zeros_(value_head.weight)
            torch.nn.init.zeros_(value_head.bias)
        self.value_head = value_head.to(vlm.device, torch.float32)
        vlm.preprocess.extra["actor"] = {"action_template": self.action_template.spec,
                                       "state_template": self.state_template.spec, "history": history}

    # ------------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", dtype: str = "float32",
             **overrides) -> "Actor":
        """Load an actor checkpoint (default: the built-in tiny actor). A checkpoint without a
        value head (e.g. a critic) gets a new zero one, reported on stderr."""
        path = model_path(path, "actor")
        safetensors = require("safetensors.torch", extra="model")
        vlm = VLM.load(path, device=device, dtype=dtype)
        cfg = {**vlm.preprocess.extra.get("actor", {}), **overrides}
        head = None
        if (path / VALUE_HEAD).is_file():
            state = safetensors.load_file(str(path / VALUE_HEAD))
            head = torch.nn.Linear(state["weight"].shape[1], 1)
            head.load_state_dict({k: v.float() for k, v in state.items()})
        else:
            print(f"actor: checkpoint {path} has no {VALUE_HEAD}; created a new (zero) value head", file=sys.stderr)
        return cls(vlm, cfg.get("action_template", "sim-arm"), cfg.get("state_template", "sim-arm-state"),
                   int(cfg.get("history", 0)), head)

    @staticmethod
    def history_length(path: str | Path | None = None) -> int:
        """How many past actions an actor checkpoint's prompt shows, from its config alone."""
        path = model_path(path, "actor")
        if not (path / VLAC_CONFIG).is_file():
            return 0  # Actor.templates names the problem
        return int(read_preprocess(path).extra.get("actor", {}).get("history", 0))

    @staticmethod
    def templates(path: str | Path | None = None) -> tuple[ActionTemplate, ActionTemplate]:
        """The action and state templates of an actor checkpoint, read from its config alone (no
        weights): what a robot must send and receive, checked before any model is loaded."""
        path = model_path(path, "actor")
        if not (path / VLAC_CONFIG).is_file():
            raise CheckpointError(f"{path} has no {VLAC_CONFIG}: not a vlac checkpoint folder; pass the folder "
                                  "that `vlac actor train` wrote (or builtin for the built-in actor)")
        cfg = read_preprocess(path).extra.get("actor", {})
        return (get_template(cfg.get("action_template", "sim-arm")),
                get_template(cfg.get("state_template", "sim-arm-state")))

    def save(self, path: str | Path, dtype: str | None = None) -> None:
        safetensors = require("safetensors.torch", extra="model")
        path = Path(path)
        self.vlm.save(path, dtype=dtype)
        safetensors.save_file({k: v.detach().float().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                              str(path / VALUE_HEAD))

    def parameters(self) -> list:
        return [p for p in self.vlm.model.parameters() if p.requires_grad] + list(self.value_head.parameters())

    def train(self, mode: bool = True) -> None:
        self.vlm.model.train(mode)
        self.value_head.train(mode)

    # ------------------------------------------------------------------------ prompts
    def prompt(self, inp: ActorInput) -> Prompt:
        state = np.asarray(inp.state, dtype=np.float64).reshape(-1)
        if state.size != self.state_template.dim:
            raise ValueError(f"state has {state.size} values but the state template has {self.state_template.dim} "
                             f"({', '.join(self.state_template.names)}): {self.state_template.spec}")
        hist = [self.action_template.to_text(a) for a in list(inp.history)[-self.history:]] if self.history else []
        return Prompt(P.action_prompt(inp.task, self.state_template.to_text(state), hist), [inp.image])

    def answer_ids(self, action) -> tuple[list[int], int]:
        """Token ids of ``action`` as decoding writes it, and how many values were clipped."""
        ints, clipped = self.action_template.quantise(action)
        return self.plan.answer_ids(ints), clipped

    # ------------------------------------------------------------------------ acting
    def value_of(self, hidden: "torch.Tensor") -> "torch.Tensor":
        """The value head on the hidden state at an answer's end (B, hidden) -> (B,)."""
        return self.value_head(hidden.float()).squeeze(-1)

    def check_mean(self) -> None:
        """Mean decoding reads each number's distribution from one position: every number of the
        action template must be one token of this actor's tokenizer."""
        if not all(t.single_token for t in self.plan.tries):
            raise ValueError("mean decoding needs a tokenizer that writes every number of the action template as "
                             "one token (the tiny preset does); decode greedy or sampled instead")

    @torch.no_grad()
    def act(self, inputs: list[ActorInput], temperature: float = 1.0, top_k: int = 0, greedy: bool = False,
            generator: "torch.Generator | None" = None, mean: bool = False) -> list[ActionSample]:
        """Decode one action per input (batched, KV-cached); only the numbers are chosen: sampled,
        the most likely (``greedy``), or the integer nearest the distribution's expected value
        (``mean``; each number then conditions the next as if it had been chosen)."""
        from transformers.cache_utils import DynamicCache

        if not inputs:
            return []
        if mean:
            self.check_mean()
        model = self.vlm.model
        model.eval()
        batch = self.vlm.encode([self.prompt(x) for x in inputs])
        mask = batch["attention_mask"]
        B, dev = mask.shape[0], mask.device
        lengths = mask.sum(1)
        cache = DynamicCache()
        out = model(input_ids=batch["input_ids"], attention_mask=mask,
                    position_ids=(mask.cumsum(1) - 1).clamp(min=0), pixel_values=batch["pixel_values"],
                    cache=cache, use_cache=True)
        logits = out.logits[torch.arange(B, device=dev), lengths - 1]  # (B, V)
        rows = [RowState(self.plan) for _ in range(B)]
        values = [0.0] * B
        next_pos = lengths.clone()
        pad = self.vlm.tokenizer.pad_token_id
        while True:
            for r, row in enumerate(rows):
                if row.complete or row.pending:
                    continue
                allowed = row.allowed_now()
                lp = constrained_log_probs(logits[r], torch.tensor(allowed, device=dev), temperature, top_k)
                if mean:
                    k = row.nearest_to_mean(allowed, lp.exp().cpu().numpy())
                elif greedy:
                    k = int(lp.argmax())
                else:
                    k = int(torch.multinomial(lp.exp().cpu(), 1, generator=generator))
                row.choose(allowed[k], allowed, float(lp[k]))
            active = [r for r, row in enumerate(rows) if row.pending]
            if not active:
                break
            n = min(len(rows[r].pending) for r in active)
            feed = torch.full((B, n), pad, dtype=torch.long, device=dev)
            finishing = []
            for r in active:
                row = rows[r]
                chunk, row.pending = row.pending[:n], row.pending[n:]
                feed[r] = torch.tensor(chunk, device=dev)
                row.tokens += chunk
                if row.complete and not row.pending:
                    finishing.append(r)
            mask = torch.cat([mask, torch.ones((B, n), dtype=mask.dtype, device=dev)], dim=1)
            pos = next_pos[:, None] + torch.arange(n, device=dev)[None]
            next_pos = next_pos + n
            out = model(input_ids=feed, attention_mask=mask, position_ids=pos, cache=cache,
                        use_cache=True, output_hidden_states=bool(finishing))
            logits = out.logits[:, -1]
            if finishing:
                v = self.value_of(out.hidden_states[-1][:, -1])
                for r in finishing:
                    values[r] = float(v[r])
        samples = []
        for r, row in enumerate(rows):
            lps = np.array(row.log_probs)
            samples.append(ActionSample(self.action_template.ints_to_vector(row.ints),
                                        self.action_template.ints_to_text(row.ints), row.tokens, row.choice_index,
                                        row.allowed, lps, float(lps.sum()), values[r]))
        return samples

    # ------------------------------------------------------------------------ training
    def evaluate(self, inputs: list[ActorInput], samples: list[ActionSample], temperature: float = 1.0,
                 top_k: int = 0, image_features: "torch.Tensor | None" = None) -> dict:
        """Teacher-forced re-scoring of decoded actions with the current weights (with grad):
        ``log_prob`` (B,), ``token_log_probs`` (list of (n_choices,)), ``entropy`` (B,) mean
        over choices of the constrained distribution, ``value`` (B,) and ``features`` (B, hidden), the
        hidden state the value head reads, and ``image_features``, which a later call may pass back
        in place of the pixels while the vision tower is frozen."""
        batch = self.vlm.encode([self.prompt(x) for x in inputs], answers=[s.tokens for s in samples],
                                end_token=False)
        if image_features is None:
            image_features = self.vlm.image_features(batch["pixel_values"])
        out = self.vlm.forward(batch, hidden=True, image_features=image_features, logits_to_keep=1)
        hidden, last = out.hidden_states[-1], batch["last"]
        dev = hidden.device
        # Every choice of every sample in one pass (a loop of small ops per choice made the
        # backward pass several times slower than the model's own): the logits at each choice's
        # position, restricted to its allowed tokens (padded), softmax at the sampling temperature.
        owner = [r for r, s in enumerate(samples) for _ in s.choice_index]
        pos = [int(last[r]) + a for r, s in enumerate(samples) for a in s.choice_index]
        allowed = [s.allowed[c] for s in samples for c in range(len(s.choice_index))]
        picked = [s.allowed[c].index(s.tokens[a]) for s in samples for c, a in enumerate(s.choice_index)]
        width = max(len(a) for a in allowed)
        ids = torch.tensor([a + [a[0]] * (width - len(a)) for a in allowed], device=dev)
        valid = torch.tensor([[k < len(a) for k in range(width)] for a in allowed], device=dev)
        # the language model's head at the choice positions only, not over the whole sequence
        logits = self.vlm.model.lm_head(hidden[torch.tensor(owner, device=dev), torch.tensor(pos, device=dev)])
        z = logits.float().gather(1, ids)
        z = (z / max(temperature, 1e-6)).masked_fill(~valid, float("-inf"))
        if top_k > 0:  # as constrained_log_probs: only where more than top_k tokens are allowed
            kth = torch.topk(z, min(top_k, width), dim=-1).values[:, -1:]
            cut = (z < kth) & (valid.sum(-1, keepdim=True) > top_k)
            z = z.masked_fill(cut, float("-inf"))
        lp = torch.log_softmax(z, dim=-1)
        chosen = lp.gather(1, torch.tensor(picked, device=dev)[:, None])[:, 0]
        lp0 = torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))  # excluded tokens: 0, and no NaN gradient
        ent = -(lp0.exp() * lp0).sum(-1)
        owner_t = torch.tensor(owner, device=dev)
        counts = torch.bincount(owner_t, minlength=len(samples)).clamp(min=1)
        total = torch.zeros(len(samples), device=dev).index_add(0, owner_t, chosen)
        entropy = torch.zeros(len(samples), device=dev).index_add(0, owner_t, ent) / counts
        starts = np.cumsum([0] + [len(s.choice_index) for s in samples])
        tok_lps = [chosen[starts[r]:starts[r + 1]] for r in range(len(samples))]
        ends = torch.stack([last[r] + len(s.tokens) for r, s in enumerate(samples)])
        features = hidden[torch.arange(len(samples), device=dev), ends]
        return {"log_prob": total, "token_log_probs": tok_lps, "entropy": entropy, "value": self.value_of(features),
                "features": features, "image_features": image_features.detach()}

    def bc_loss(self, inputs: list[ActorInput], actions: list, returns=None, value_weight: float = 0.0,
                image_features: "torch.Tensor | None" = None):
        """Behaviour cloning: cross-entropy on the action's tokens as decoding writes them (plus
        the end token); with ``returns`` and ``value_weight`` > 0, also the value head's squared
        error against them; ``image_features`` (see ``evaluate``) stand in for the pixels.
        Returns (loss, {"action": ..., "value": ...})."""
        answers = []
        for a in actions:
            ids, _ = self.answer_ids(a)
            answers.append(ids)
        batch = self.vlm.encode([self.prompt(x) for x in inputs], answers=answers)
        use_value = returns is not None and value_weight > 0
        out = self.vlm.forward(batch, hidden=use_value, image_features=image_features)
        loss = self.vlm.answer_loss(out.logits, batch["labels"])
        stats = {"action": loss.item()}
        if use_value:
            ends = batch["last"] + torch.tensor([len(a) for a in answers], device=batch["last"].device)
            v = self.value_of(out.hidden_states[-1][torch.arange(len(answers)), ends])
            target = torch.as_tensor(np.asarray(returns, dtype=np.float32), device=v.device)
            vloss = torch.nn.functional.mse_loss(v, target)
            stats["value"] = vloss.item()
            loss = loss + value_weight * vloss
        return loss, stats


__all__ = ["Actor", "ActorInput", "ActionSample", "TemplateError", "DEFAULT_CHECKPOINT"]
