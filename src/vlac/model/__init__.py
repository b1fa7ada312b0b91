"""The VLAC vision-language model (``vlm``), its prompts and the tiny preset's tokenizer.

Importing this package needs no torch; ``vlac.model.vlm`` does.
"""


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or unreadable."""
