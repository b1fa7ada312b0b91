"""The critic at inference: pairwise progress, done probability, task description and
whole-trajectory scoring. Stateless and batched, so the RL loop can serve it.

    >>> critic = Critic.load()                                   # the built-in default
    >>> critic.progress([(frame_a, frame_b)], "open the drawer")  # array([0.12])
    >>> critic.done([frame_b], "open the drawer")                 # array([0.03])
    >>> critic.done([frame_b], "open the drawer", goal=ref_frames[-1])   # in-context done
    >>> s = critic.score_trajectory(frames, "open the drawer", skip=3, reference=ref_frames)
    >>> s.deltas, s.values, s.done

Numbers are read either greedily or "rich": the expectation over the number tokens whose
probability is at least ``rich_threshold`` times the top one's (the release's reading).

``symmetric=True`` scores every pair both ways with the same prompt and returns
``(c(a, b) - c(b, a)) / 2``: the critic is trained on both orders of each pair (the joint group),
so the two readings estimate the same progress with opposite signs, and averaging them cancels
part of the noise of each. It costs two forward passes per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlac.critic import labels as L
from vlac.critic.metrics import pair_indices, value_curve
from vlac.model import prompts as P
from vlac.model.tokenizer import number_token_ids
from vlac.model.preprocess import to_rgb_uint8
from vlac.model import BUILTIN, model_path
from vlac.model.vlm import VLM, Prompt
from vlac.utils.imports import require

torch = require("torch", extra="model")

DEFAULT_CHECKPOINT = BUILTIN["critic"]
DECODINGS = ("rich", "greedy")


@dataclass
class Reference:
    """A one-shot reference: k frames of a successful episode of the task, with their progress."""

    frames: list
    progress: list

    @classmethod
    def from_episode(cls, frames, k: int = 3) -> "Reference":
        frames = list(frames)
        if len(frames) < 2:
            raise ValueError(f"a reference episode needs at least 2 frames, got {len(frames)}")
        idx = L.reference_frames(len(frames) - 1, k)
        return cls([to_rgb_uint8(frames[t], f"reference frame {t}") for t in idx],
                   [L.frame_progress(t, len(frames) - 1) for t in idx])


@dataclass
class TrajectoryScore:
    """Scores of one trajectory: frames ``indices`` scored pairwise in order."""

    indices: list[int]
    deltas: np.ndarray  # (N-1,) progress of frame k+1 over frame k, in [-1, 1]
    values: np.ndarray  # (N,) value curve (Eq. 7, clamped to [0, 1])
    done: np.ndarray | None = None  # (N,) probability that the task is done at each scored frame
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"indices": list(map(int, self.indices)), "deltas": self.deltas.round(4).tolist(),
             "values": self.values.round(4).tolist()}
        if self.done is not None:
            d["done"] = self.done.round(4).tolist()
        return d


class Critic:
    def __init__(self, vlm: VLM, batch_size: int = 32, rich_threshold: float = 0.1, symmetric: bool = False):
        self.vlm = vlm
        self.batch_size = batch_size
        self.rich_threshold = rich_threshold
        self.symmetric = symmetric
        tok = vlm.tokenizer
        vlm.model.eval()
        # Integer answers as single tokens (the tiny tokenizer) or digit by digit (large ones).
        self.number_ids = number_token_ids(tok, -100, 100)
        self.digit_ids = [tok.encode(str(d), add_special_tokens=False)[0] for d in range(10)]
        self.minus_id = tok.encode("-", add_special_tokens=False)[0]
        self.done_ids = [tok.encode(s, add_special_tokens=False)[0] for s in ("0", "1")]

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", dtype: str = "float32", **kw) -> "Critic":
        """Load a checkpoint folder; ``builtin`` (or None) loads the built-in default."""
        return cls(VLM.load(model_path(path, "critic"), device=device, dtype=dtype), **kw)

    # ------------------------------------------------------------------------------ primitives
    def _batches(self, items: list):
        for s in range(0, len(items), self.batch_size):
            yield items[s : s + self.batch_size]

    def _read_numbers(self, logits: "torch.Tensor", decoding: str) -> np.ndarray:
        """(B, V) first-answer-token logits -> integers (greedy) or expectations (rich)."""
        ids = torch.tensor(self.number_ids, device=logits.device)
        values = torch.arange(-100, 101, device=logits.device, dtype=torch.float32)
        p = torch.softmax(logits[:, ids], dim=-1)  # (B, 201) restricted to the number tokens
        if decoding == "greedy":
            return values[p.argmax(-1)].cpu().numpy()
        keep = p >= self.rich_threshold * p.max(-1, keepdim=True).values
        w = p * keep
        return ((w * values).sum(-1) / w.sum(-1)).cpu().numpy()

    @torch.no_grad()
    def _read_digits(self, prompt: Prompt, decoding: str, max_digits: int = 3) -> float:
        """For tokenizers that write numbers as a sign and digit tokens: decode step by step,
        taking per digit position the arg-max or the thresholded expectation."""
        b = self.vlm.encode([prompt])
        ids, mask = b["input_ids"], b["attention_mask"]
        sign, digits = 1.0, []
        for _ in range(max_digits + 1):
            logits = self.vlm.model(input_ids=ids, attention_mask=mask, pixel_values=b["pixel_values"]).logits[0, -1]
            top = int(logits.argmax())
            if top == self.minus_id and not digits and sign > 0:
                sign = -1.0
            elif top in self.digit_ids:
                p = torch.softmax(logits[self.digit_ids].float(), -1)
                if decoding == "greedy":
                    digits.append(float(p.argmax()))
                else:
                    keep = p >= self.rich_threshold * p.max()
                    digits.append(float((p * keep * torch.arange(10.0)).sum() / (p * keep).sum()))
            else:
                break
            ids = torch.cat([ids, torch.tensor([[top]], device=ids.device)], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        value = sum(d * 10 ** (len(digits) - 1 - k) for k, d in enumerate(digits))
        return sign * min(value, 100.0)

    @torch.no_grad()
    def _progress_prompts(self, prompts: list[Prompt], decoding: str) -> np.ndarray:
        if decoding not in DECODINGS:
            raise ValueError(f"decoding {decoding!r} is not one of {DECODINGS}")
        out = []
        for chunk in self._batches(prompts):
            if self.number_ids is not None:
                out.append(self._read_numbers(self.vlm.next_token_logits(self.vlm.encode(chunk)), decoding))
            else:
                out.append(np.array([self._read_digits(p, decoding) for p in chunk]))
        return np.concatenate(out) / 100.0 if out else np.zeros(0)

    def progress(self, pairs: list, task: str | list[str], reference: Reference | None = None,
                 first_frame=None, decoding: str = "rich", symmetric: bool | None = None) -> np.ndarray:
        """Progress of each pair's second image over its first, in [-1, 1]. With a reference
        (one-shot), ``first_frame`` is the current trajectory's first frame (default: the first
        pair's first image). ``symmetric`` (default: the critic's setting) also scores each pair
        in reverse and returns the mean of the forward reading and the negated reverse one."""
        tasks = [task] * len(pairs) if isinstance(task, str) else list(task)
        if len(tasks) != len(pairs):
            raise ValueError(f"{len(tasks)} tasks for {len(pairs)} pairs")
        both = self.symmetric if symmetric is None else symmetric
        prompts, reverse = [], []
        if reference is not None:
            first = to_rgb_uint8(first_frame if first_frame is not None else pairs[0][0], "first frame")

        def prompt(t, ims):
            if reference is None:
                return Prompt(P.pair_prompt(t), ims)
            return Prompt(P.one_shot_pair_prompt(t, reference.progress), [*reference.frames, first, *ims])

        for k, ((a, b), t) in enumerate(zip(pairs, tasks)):
            ims = [to_rgb_uint8(a, f"pair {k} image 1"), to_rgb_uint8(b, f"pair {k} image 2")]
            prompts.append(prompt(t, ims))
            if both:
                reverse.append(prompt(t, ims[::-1]))
        if not both:
            return self._progress_prompts(prompts, decoding)
        c = self._progress_prompts(prompts + reverse, decoding)
        return (c[: len(prompts)] - c[len(prompts):]) / 2

    @torch.no_grad()
    def done(self, images: list, task: str, goal=None) -> np.ndarray:
        """Probability that the task is complete in each image: p("1") / (p("0") + p("1")).
        ``goal``: the last frame of a successful reference episode of the task, shown first
        (in-context done, the release's variant)."""
        text = P.done_prompt(task) if goal is None else P.goal_done_prompt(task)
        lead = [] if goal is None else [to_rgb_uint8(goal, "goal image")]
        prompts = [Prompt(text, lead + [to_rgb_uint8(im, f"image {k}")]) for k, im in enumerate(images)]
        out = []
        for chunk in self._batches(prompts):
            logits = self.vlm.next_token_logits(self.vlm.encode(chunk))[:, self.done_ids]  # (B, 2)
            out.append(torch.softmax(logits, -1)[:, 1].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def describe(self, start, end, max_new_tokens: int = 24) -> str:
        """The task shown by a start frame and an end frame, in words."""
        prompt = Prompt(P.describe_prompt(), [to_rgb_uint8(start, "start frame"), to_rgb_uint8(end, "end frame")])
        return P.parse_description(self.vlm.generate_text(prompt, max_new_tokens))

    # ------------------------------------------------------------------------------ trajectories
    def score_trajectory(self, frames, task: str, skip: int = 3, reference: Reference | list | None = None,
                         decoding: str = "rich", with_done: bool = True) -> TrajectoryScore:
        """Score frames (T, H, W, 3) pairwise with step ``skip``; the value curve follows Eq. 7
        from 0. ``reference``: a Reference or a reference episode's frames (one-shot)."""
        frames = list(frames)
        P.pair_prompt(task)  # validates the task text before any work
        idx = pair_indices(len(frames), skip)
        if reference is not None and not isinstance(reference, Reference):
            reference = Reference.from_episode(reference)
        pairs = [(frames[a], frames[b]) for a, b in zip(idx[:-1], idx[1:])]
        deltas = self.progress(pairs, task, reference=reference, first_frame=frames[0], decoding=decoding)
        done = self.done([frames[t] for t in idx], task) if with_done else None
        return TrajectoryScore(idx, deltas, value_curve(deltas), done)
