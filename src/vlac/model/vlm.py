"""The VLAC vision-language model: an InternVL-architecture model through transformers
(``InternVLForConditionalGeneration``), with its tokenizer and image settings.

The same class serves the tiny preset (built from a config, trains on CPU) and any local
transformers-format InternVL checkpoint (e.g. InternVL3-1B-hf), optionally with LoRA.

    >>> vlm = VLM.tiny(train_tokenizer(["open the drawer"]))
    >>> batch = vlm.encode([Prompt(pair_prompt("open the drawer"), [img_a, img_b])], answers=["12"])
    >>> loss = vlm.loss(batch)
    >>> vlm.save("ckpt/")  ;  vlm = VLM.load("ckpt/")
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vlac.model.prompts import IMAGE, SYSTEM_PROMPT
from vlac.model import CheckpointError
from vlac.model.tokenizer import IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START
from vlac.utils.imports import require

torch = require("torch", extra="model")
transformers = require("transformers", extra="model")

VLAC_CONFIG = "vlac_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Prompt:
    """One user turn: text with one ``<image>`` per entry of ``images`` (HxWx3 uint8 RGB)."""

    text: str
    images: list = field(default_factory=list)


@dataclass
class ImageSettings:
    """How camera images become pixel values; saved as ``vlac_config.json``."""

    image_size: int = 96
    """Side of the square the image is centre-cropped and resized to."""
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    system_prompt: bool = True
    """Open each chat with the release's system prompt. The tiny preset leaves it out: it adds
    ~35 tokens to every sample (a quarter of the training compute) and carries no information."""
    extra: dict = field(default_factory=dict)
    """Anything else a checkpoint records (e.g. which objectives it was trained on)."""


@dataclass
class TinyPreset:
    """The built-in tiny InternVL: trains on two CPU cores in under an hour."""

    image_size: int = 96
    patch_size: int = 12
    vision_width: int = 256
    vision_layers: int = 4
    text_width: int = 256
    text_layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 1024


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Accept HxWx3 RGB (uint8 or float in [0, 1]), 3xHxW, HxW grey or HxWx4 RGBA; anything else
    is rejected with the shape it had and what is expected."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channel-first (3, H, W) -> (H, W, 3)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or min(a.shape[:2]) < 8:
        raise ValueError(f"{name} has shape {a.shape}; expected an RGB image HxWx3 (or 3xHxW, HxW grey, "
                         "HxWx4 RGBA) of at least 8x8 pixels")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} has dtype {a.dtype}; expected uint8 0..255 or float 0..1")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf values")
        if a.min() < 0 or a.max() > 1.0 + 1e-6:
            raise ValueError(f"{name} is float with values in [{a.min():.3g}, {a.max():.3g}]; float images "
                             "must be scaled to [0, 1] (or pass uint8 0..255)")
        return np.round(a * 255).astype(np.uint8)
    if a.min() < 0 or a.max() > 255:
        raise ValueError(f"{name} is integer with values outside 0..255")
    return a.astype(np.uint8)


def read_image_settings(path: str | Path) -> ImageSettings:
    """A checkpoint's image settings from its config files alone (no weights)."""
    path = Path(path)
    if (path / VLAC_CONFIG).is_file():
        raw = json.loads((path / VLAC_CONFIG).read_text())
        return ImageSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    # a plain transformers InternVL checkpoint: read its image size from the vision config
    cfg = json.loads((path / "config.json").read_text())
    size = cfg.get("vision_config", {}).get("image_size", 448)
    return ImageSettings(image_size=int(size[0] if isinstance(size, list) else size))


def _square(a: np.ndarray, s: int) -> "torch.Tensor":
    """HxWx3 uint8 -> (3, s, s) float in [0, 1]: centre-cropped square, resized (antialiased)."""
    h, w = a.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(a[top:top + side, left:left + side])
    t = torch.from_numpy(crop if crop.flags.writeable else crop.copy()).permute(2, 0, 1)  # (a received frame
    t = t.float().div_(255.0)[None]  # (1, 3, side, side)                                     is read-only)
    if side != s:
        t = torch.nn.functional.interpolate(t, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return t[0]


def fit_frame(image: np.ndarray, side: int) -> np.ndarray:
    """A camera frame reduced to what a model reading ``side`` px sees (centre crop, the model's
    own resampling, uint8): frames larger than that are only ever read at this size, so keeping
    them whole costs memory and nothing else. Frames with a short side of at most ``side`` px are
    returned as they are."""
    if min(image.shape[:2]) <= side:
        return image
    t = _square(to_rgb_uint8(image), side)
    return t.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class VLM:
    """Model + tokenizer + image settings, with batch encoding for training and scoring."""

    def __init__(self, model, tokenizer, settings: ImageSettings):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        cfg = model.config
        self.image_seq_length = int(cfg.image_seq_length)
        self.image_token_id = int(cfg.image_token_id)
        self.image_block = IMG_START + IMG_CONTEXT * self.image_seq_length + IMG_END

    # ----------------------------------------------------------------------------- building
    @classmethod
    def tiny(cls, tokenizer, preset: TinyPreset | None = None, seed: int = 0) -> "VLM":
        p = preset or TinyPreset()
        if p.image_size % p.patch_size or (p.image_size // p.patch_size) % 2:
            raise ValueError(f"image_size {p.image_size} must be an even multiple of patch_size {p.patch_size}")
        tokens = (p.image_size // p.patch_size) ** 2 // 4  # pixel shuffle with ratio 0.5
        cfg = transformers.InternVLConfig(
            vision_config=transformers.InternVLVisionConfig(
                hidden_size=p.vision_width, num_hidden_layers=p.vision_layers, num_attention_heads=p.heads,
                intermediate_size=4 * p.vision_width, image_size=[p.image_size] * 2,
                patch_size=[p.patch_size] * 2),
            text_config=dict(model_type="qwen2", hidden_size=p.text_width, num_hidden_layers=p.text_layers,
                             num_attention_heads=p.heads, num_key_value_heads=p.kv_heads,
                             intermediate_size=4 * p.text_width, vocab_size=len(tokenizer),
                             max_position_embeddings=p.max_positions, tie_word_embeddings=True,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
            image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT), image_seq_length=tokens,
            downsample_ratio=0.5, tie_word_embeddings=True)
        torch.manual_seed(seed)
        model = transformers.InternVLForConditionalGeneration(cfg)
        return cls(model, tokenizer, ImageSettings(image_size=p.image_size, system_prompt=False))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: str = "float32") -> "VLM":
        """Load a vlac checkpoint, or a transformers InternVL checkpoint (``*-hf``) by path."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {path} does not exist; train one with "
                                  "`vlac critic train --out DIR` (a critic) or `vlac actor train --out DIR` (an actor), "
                                  "or omit the option to use the built-in default")
        missing = [] if (path / "config.json").is_file() else ["config.json"]
        has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
        if missing or not has_weights:
            what = missing + ([] if has_weights else ["model.safetensors"])
            raise CheckpointError(f"checkpoint folder {path} is missing {', '.join(what)}; it must be a folder "
                                  "written by `vlac critic train` or `vlac actor train`, or a transformers InternVL "
                                  "checkpoint")
        settings = read_image_settings(path)
        tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json")
        if not any((path / f).is_file() for f in tokenizer_files):  # transformers would advise sentencepiece
            raise CheckpointError(f"checkpoint folder {path} has no tokenizer ({', '.join(tokenizer_files)}); "
                                  "copy tokenizer.json from the folder it was trained from")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds here
            raise CheckpointError(f"checkpoint folder {path} has no usable tokenizer ({e}); "
                                  "it needs tokenizer.json (vlac checkpoints) or the model's tokenizer files") from None
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # one "Loading weights" bar per model is noise
        try:
            model = transformers.InternVLForConditionalGeneration.from_pretrained(path, dtype=torch_dtype)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        model.to(device).eval()
        return cls(model, tokenizer, settings)

    def save(self, path: str | Path, dtype: str | None = None) -> None:
        """Write weights (``dtype`` e.g. "float16" for a small release), config, tokenizer and
        image settings. The model in memory keeps its dtype."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):  # a peft LoRA model saves as plain weights
            model = model.merge_and_unload()
        if dtype is not None:
            state = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
                     for k, v in model.state_dict().items()}
            model.save_pretrained(path, state_dict=state)
            cfg = json.loads((path / "config.json").read_text())
            cfg["dtype"] = dtype
            (path / "config.json").write_text(json.dumps(cfg, indent=2))
        else:
            model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / VLAC_CONFIG).write_text(json.dumps(asdict(self.settings), indent=2))

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05) -> None:
        """Wrap the language model's attention and MLP projections with LoRA adapters (peft)."""
        peft = require("peft", extra="model")
        cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                              target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
        self.model = peft.get_peft_model(self.model, cfg)

    def extend_vocabulary(self, texts: list[str]) -> list[str]:
        """Teach a word-level tokenizer the unknown words of ``texts`` (new embedding rows)."""
        from vlac.model.tokenizer import extend_vocabulary

        added = extend_vocabulary(self.tokenizer, texts)
        if added:
            self.model.resize_token_embeddings(len(self.tokenizer))
        return added

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ----------------------------------------------------------------------------- encoding
    def pixel_values(self, images: list) -> "torch.Tensor":
        """Images (any size) -> (N, 3, S, S) normalised, centre-cropped square and resized."""
        s = self.settings.image_size
        out = []
        for k, im in enumerate(images):
            out.append(_square(to_rgb_uint8(im, name=f"image {k}"), s))
        x = torch.stack(out) if out else torch.zeros(0, 3, s, s)
        mean = torch.tensor(self.settings.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.settings.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    def chat_text(self, prompt_text: str) -> str:
        """The chat-formatted user turn up to where the assistant's answer starts."""
        system = f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n" if self.settings.system_prompt else ""
        return (f"{system}{IM_START}user\n{prompt_text.replace(IMAGE, self.image_block)}{IM_END}\n"
                f"{IM_START}assistant\n")

    def encode(self, prompts: list[Prompt], answers: list[str] | list[list[int]] | None = None,
               end_token: bool = True) -> dict:
        """Right-padded batch. With ``answers`` (text, or token ids as the actor's template
        decoding writes them): ``labels`` hold the answer tokens (and the end token) and -100
        elsewhere, so the loss falls on answers only. ``last`` is the index of each row's last
        prompt token, whose logits predict the answer's first token."""
        tok = self.tokenizer
        rows, labels, last = [], [], []
        for k, p in enumerate(prompts):
            n_img = p.text.count(IMAGE)
            if n_img != len(p.images):
                raise ValueError(f"prompt {k} has {n_img} <image> placeholders but {len(p.images)} images")
            ids = tok.encode(self.chat_text(p.text), add_special_tokens=False)
            last.append(len(ids) - 1)
            lab = [-100] * len(ids)
            if answers is not None:
                a = answers[k]
                ans = list(a) if not isinstance(a, str) else tok.encode(a, add_special_tokens=False)
                ans += [tok.eos_token_id] if end_token else []
                ids = ids + ans
                lab = lab + ans
            rows.append(ids)
            labels.append(lab)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        label_t = torch.full((len(rows), width), -100, dtype=torch.long)
        for k, (r, lab) in enumerate(zip(rows, labels)):
            input_ids[k, : len(r)] = torch.tensor(r)
            mask[k, : len(r)] = 1
            label_t[k, : len(lab)] = torch.tensor(lab)
        images = [im for p in prompts for im in p.images]
        dev = self.device
        batch = {"input_ids": input_ids.to(dev), "attention_mask": mask.to(dev),
                 "pixel_values": self.pixel_values(images), "last": torch.tensor(last, device=dev)}
        if answers is not None:
            batch["labels"] = label_t.to(dev)
        return batch

    # ----------------------------------------------------------------------------- computing
    def forward(self, batch: dict, hidden: bool = False, image_features: "torch.Tensor | None" = None,
                logits_to_keep: int = 0):
        """One forward pass over an encoded batch (``hidden``: also every layer's hidden states).
        ``image_features`` (from ``image_features``) stand in for the batch's pixels, so a frozen
        vision tower runs once per image however often the text is re-scored; ``logits_to_keep``
        > 0 computes logits at the last that many positions only (0: all)."""
        images = {}
        if image_features is not None:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            images["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=image_features)}
        elif batch["pixel_values"].numel():
            images["pixel_values"] = batch["pixel_values"]
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=hidden, logits_to_keep=logits_to_keep, **images)

    def image_features(self, pixel_values: "torch.Tensor") -> "torch.Tensor":
        """(N, image tokens, hidden): what the vision tower and projector make of the images, as
        the language model reads them."""
        return self.model.model.get_image_features(pixel_values=pixel_values).pooler_output

    def vision_parameters(self) -> list:
        """The vision tower's and projector's parameters (frozen during RL by default)."""
        m = self.model.model
        return [*m.vision_tower.parameters(), *m.multi_modal_projector.parameters()]

    @staticmethod
    def answer_loss(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        """Mean cross-entropy over answer tokens (labels shifted by one inside)."""
        logits = logits.float()  # (B, T, V)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)

    def loss(self, batch: dict) -> "torch.Tensor":
        return self.answer_loss(self.forward(batch).logits, batch["labels"])

    def next_token_logits(self, batch: dict) -> "torch.Tensor":
        """(B, V) logits of the first answer token."""
        logits = self.forward(batch).logits
        return logits[torch.arange(logits.shape[0], device=logits.device), batch["last"]].float()

    @torch.no_grad()
    def generate_text(self, prompt: Prompt, max_new_tokens: int = 24) -> str:
        """Greedy continuation of one prompt, up to the end token."""
        b = self.encode([prompt])
        out = self.model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                  pixel_values=b["pixel_values"], max_new_tokens=max_new_tokens,
                                  do_sample=False, eos_token_id=self.tokenizer.eos_token_id,
                                  pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, b["input_ids"].shape[1]:], skip_special_tokens=True)
