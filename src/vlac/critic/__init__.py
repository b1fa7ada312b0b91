"""The VLAC critic at inference: pairwise progress, done probability, task description and
one-shot references (``critic``), its training labels (``labels``) and metrics (``metrics``).
Training lives in ``vlac.train``, evaluation in ``vlac.eval``."""
