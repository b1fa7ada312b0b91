"""Shared fixtures: real MuJoCo simulation and real files in temporary directories."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from vlac.sim.collect import CollectConfig, collect  # noqa: E402


def pytest_configure(config):
    """Each test process (pytest-xdist runs several) sizes torch's pool to its share of the cores:
    with torch's default pool in every process the models of parallel tests slow each other
    down many times over."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from vlac.utils.imports import set_threads

        set_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow(SECONDS)` first, longest first: pytest-xdist hands tests out in this order, so
    the long end-to-end runs start at once, side by side, instead of one of them ending the suite alone
    on one worker while the others idle."""
    def expected(item) -> float:
        mark = item.get_closest_marker("slow")
        return mark.args[0] if mark is not None and mark.args else 0.0
    items.sort(key=expected, reverse=True)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Two tasks x 2 episodes (one expert, one stall each) with a second camera."""
    out = tmp_path_factory.mktemp("data") / "small"
    collect(CollectConfig(out=str(out), tasks="reach-v3,push-v3", episodes_per_task=2, variant="gripper-cam"),
            progress=False)
    return out


@pytest.fixture(scope="session")
def expert_dataset(tmp_path_factory):
    """reach-v3 x 3 expert episodes: every episode successful, so every objective has data."""
    out = tmp_path_factory.mktemp("data") / "experts"
    collect(CollectConfig(out=str(out), tasks="reach-v3", episodes_per_task=3, behaviours="expert:1", seed=5),
            progress=False)
    return out


@pytest.fixture
def digit_tokenizer():
    """A BPE tokenizer that writes numbers digit by digit, as large InternVL checkpoints do."""
    import tokenizers
    import transformers

    from vlac.model.prompts import prompt_corpus
    from vlac.model.tokenizer import IM_END, PAD, SPECIAL_TOKENS, UNK

    pre = tokenizers.pre_tokenizers
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre.Sequence([pre.WhitespaceSplit(), pre.Digits(individual_digits=True), pre.Punctuation()])
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS)
    corpus = prompt_corpus() + ["reach the goal", "0 1 2 3 4 5 6 7 8 9 - +", "{x: -47mm, y: 19mm, open: 1}"]
    tok.train_from_iterator(corpus, trainer=trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=IM_END)
