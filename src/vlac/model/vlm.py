"""The VLAC vision-language model: an InternVL-architecture model through transformers
(``InternVLForConditionalGeneration``), with its tokenizer and observation pipeline (``vlac.model.preprocess``).

The same class serves the tiny preset (built from a config, trains on CPU) and any local
transformers-format InternVL checkpoint (e.g. InternVL3-1B-hf), optionally with LoRA.

    >>> vlm = VLM.tiny(train_tokenizer(["open the drawer"]))
    >>> batch = vlm.encode([Prompt(pair_prompt("open the drawer"), [img_a, img_b])], answers=["12"])
    >>> loss = vlm.loss(batch)
    >>> vlm.save("ckpt/")  ;  vlm = VLM.load("ckpt/")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


from vlac.model import CheckpointError
from vlac.model.preprocess import Preprocess, read_preprocess
from vlac.model.prompts import IMAGE, SYSTEM_PROMPT
from vlac.model.tokenizer import IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START
from vlac.utils.imports import require

torch = require("torch", extra="model")
transformers = require("transformers", extra="model")


@dataclass
class Prompt:
    """One user turn: text with one ``<image>`` per entry of ``images`` (HxWx3 uint8 RGB)."""

    text: str
    images: list = field(default_factory=list)


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


class VLM:
    """Model + tokenizer + observation pipeline, with batch encoding for training and scoring."""

    def __init__(self, model, tokenizer, preprocess: Preprocess):
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
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
        return cls(model, tokenizer, Preprocess(image_size=p.image_size, system_prompt=False))

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
        preprocess = read_preprocess(path)
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
        return cls(model, tokenizer, preprocess)

    def save(self, path: str | Path, dtype: str | None = None) -> None:
        """Write weights (``dtype`` e.g. "float16" for a small release), config, tokenizer and
        observation pipeline. The model in memory keeps its dtype."""
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
        self.preprocess.save(path)

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
        return self.preprocess.pixels(images).to(self.device, self.dtype)

    def chat_text(self, prompt_text: str) -> str:
        """The chat-formatted user turn up to where the assistant's answer starts."""
        system = f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n" if self.preprocess.system_prompt else ""
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
