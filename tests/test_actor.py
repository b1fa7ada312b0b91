"""The actor on a real tiny InternVL: template-constrained decoding, log-probabilities equal to a
teacher-forced pass, the value head, behaviour cloning, and `vlac actor train | eval`."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlac.actor.actor import Actor, ActorInput
from vlac.train.actions import ActionSource, Demo
from vlac.data.lerobot_format import DatasetError
from vlac.model.tokenizer import train_tokenizer
from vlac.model.vlm import VLM

TASK = "push the puck to the goal"


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [ActorInput(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8),
                       np.array([rng.uniform(-300, 300), rng.uniform(400, 900), rng.uniform(0, 300), rng.uniform(0, 1)]),
                       TASK if k % 2 else "reach the red goal point with the gripper") for k in range(n)]


@pytest.fixture(scope="module")
def word_actor():
    torch.manual_seed(0)
    return Actor(VLM.tiny(train_tokenizer([TASK]), seed=0), history=2)


@pytest.fixture
def digit_actor(digit_tokenizer):
    return Actor(VLM.tiny(digit_tokenizer, seed=1), action_template="6dof")


def _check_samples(actor, samples):
    t = actor.action_template
    for s in samples:
        v = t.from_text(s.text)  # parses, in range
        assert np.array_equal(v, s.action)
        ints = [int(round(x / f.step)) for x, f in zip(s.action, t.fields)]
        # every token outside the chosen numbers is the template's fixed text
        assert s.tokens == actor.plan.answer_ids(ints)
        assert len(s.token_log_probs) == len(s.choice_index) and np.all(s.token_log_probs <= 0)
        assert s.log_prob == pytest.approx(s.token_log_probs.sum())


@pytest.mark.parametrize("temperature, top_k", [(0.3, 0), (1.0, 0), (4.0, 0), (2.0, 3)])
def test_decoding_stays_in_template_and_ranges(word_actor, temperature, top_k):
    g = torch.Generator().manual_seed(1)
    inputs = _inputs(8)
    samples = word_actor.act(inputs, temperature=temperature, top_k=top_k, generator=g)
    samples += word_actor.act(inputs, temperature=temperature, top_k=top_k, generator=g)
    _check_samples(word_actor, samples)
    if temperature >= 1.0 and not top_k:  # sampling explores the whole range of each field
        xs = {int(s.action[0]) for s in samples}
        assert len(xs) > 4


def test_mean_decoding_takes_the_number_nearest_the_expected_value(word_actor, digit_actor):
    from vlac.actor.decoding import RowState

    row = RowState(word_actor.plan)
    row.pending = []  # at the first number (x, -10..10), its fixed text fed
    allowed = row.allowed_now()
    values = [word_actor.plan.tries[0].value[word_actor.plan.tries[0].children[0][t]] for t in allowed]
    probs = np.full(len(allowed), 1e-9)  # (a softmax leaves no number at 0)
    probs[values.index(0)] = 0.4  # the most likely value ...
    for v in (5, 6, 7):
        probs[values.index(v)] = 0.2  # ... against an expected value of 3.6
    assert values[int(np.argmax(probs))] == 0 and values[row.nearest_to_mean(allowed, probs)] == 4
    probs[:] = 0
    for v, p in ((0, 0.5), (-1, 0.5)):  # halfway: the tie goes to the number nearer 0, on either side
        probs[values.index(v)] = p
    assert values[row.nearest_to_mean(allowed, probs)] == 0
    probs[values.index(-1)], probs[values.index(1)] = 0, 0.5
    assert values[row.nearest_to_mean(allowed, probs)] == 0
    probs[:] = 0
    probs[values.index(-10)], probs[values.index(10)] = 0.5, 0.5  # one outside the top k (probability 0) never is
    assert values[row.nearest_to_mean(allowed, probs)] in (-10, 10)
    inputs = _inputs(6, seed=5)
    means = word_actor.act(inputs, mean=True)
    _check_samples(word_actor, means)
    assert [s.text for s in means] == [s.text for s in word_actor.act(inputs, mean=True)]  # nothing drawn
    greedy = [s.text for s in word_actor.act(inputs, greedy=True)]
    # a cold distribution's expected value is its most likely value; with the top 1 only, so is any
    assert [s.text for s in word_actor.act(inputs, mean=True, temperature=1e-4)] == greedy
    assert [s.text for s in word_actor.act(inputs, mean=True, top_k=1)] == greedy
    with pytest.raises(ValueError, match="one token"):
        digit_actor.act(_inputs(1), mean=True)


@pytest.mark.parametrize("temperature, top_k", [(0.5, 0), (1.0, 3), (3.0, 0)])
def test_digit_tokenizer_decoding_in_ranges(digit_actor, temperature, top_k):
    assert not digit_actor.plan.tries[0].single_token  # -123 is several tokens here
    g = torch.Generator().manual_seed(2)
    samples = digit_actor.act(_inputs(16), temperature=temperature, top_k=top_k, generator=g)
    _check_samples(digit_actor, samples)
    assert max(len(s.choice_index) for s in samples) > 4  # several tokens per number


@pytest.mark.parametrize("which, temperature, top_k", [("word", 1.0, 0), ("word", 1.7, 5), ("digit", 1.3, 0)])
def test_log_probs_equal_teacher_forced_pass(which, temperature, top_k, word_actor, digit_actor):
    actor = word_actor if which == "word" else digit_actor
    inputs = _inputs(5, seed=3)
    inputs[2].history = [np.array([1, -2, 3, 1.0])] * 3
    g = torch.Generator().manual_seed(3)
    samples = actor.act(inputs, temperature=temperature, top_k=top_k, generator=g)
    out = actor.evaluate(inputs, samples, temperature=temperature, top_k=top_k)
    got = out["log_prob"].detach().numpy()
    want = np.array([s.log_prob for s in samples])
    np.testing.assert_allclose(got, want, atol=2e-4)
    for s, lps in zip(samples, out["token_log_probs"]):
        np.testing.assert_allclose(lps.detach().numpy(), s.token_log_probs, atol=2e-4)
    np.testing.assert_allclose(out["value"].detach().numpy(), [s.value for s in samples], atol=1e-4)
    assert torch.all(out["entropy"] > 0)
    out["log_prob"].sum().backward()  # differentiable, as PPO needs
    assert actor.vlm.model.get_input_embeddings().weight.grad is not None
    actor.vlm.model.zero_grad()


@pytest.mark.slow(80)
def test_value_head_trains_and_round_trips(word_actor, tmp_path):
    inputs = _inputs(6, seed=4)
    actions = [np.array([1, 2, 3, 1.0])] * 6
    returns = np.linspace(0.1, 0.9, 6)
    opt = torch.optim.AdamW(word_actor.value_head.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss, parts = word_actor.bc_loss(inputs, actions, returns, value_weight=1.0)
        first = parts["value"] if first is None else first
        loss.backward()
        opt.step()
        opt.zero_grad()
        word_actor.vlm.model.zero_grad()
    assert parts["value"] < 0.5 * first
    word_actor.save(tmp_path / "a")
    again = Actor.load(tmp_path / "a")
    assert again.history == 2 and again.action_template.spec == word_actor.action_template.spec
    assert torch.equal(again.value_head.weight, word_actor.value_head.weight)
    s1 = word_actor.act(inputs[:2], greedy=True)
    s2 = again.act(inputs[:2], greedy=True)
    assert [s.text for s in s1] == [s.text for s in s2]
    assert [s.value for s in s1] == pytest.approx([s.value for s in s2], abs=1e-5)


def test_checkpoint_without_value_head_gets_one(tmp_path, capsys):
    from vlac.critic.critic import DEFAULT_CHECKPOINT

    actor = Actor.load(DEFAULT_CHECKPOINT)  # a critic: no value head, no actor words yet
    err = capsys.readouterr().err
    assert "created a new (zero) value head" in err and "added" in err
    assert actor.value_head_created
    [s] = actor.act(_inputs(1), greedy=True)
    _check_samples(actor, [s])


def test_bad_state_and_out_of_range_actions(word_actor):
    bad = _inputs(1)[0]
    bad.state = np.zeros(3)
    with pytest.raises(ValueError, match="state has 3 values"):
        word_actor.act([bad])
    frames = np.zeros((5, 96, 96, 3), np.uint8)
    actions = np.array([[1, 2, 3, 1], [40, 2, 3, 1], [1, -2, 3, 0], [1, 2, 3, 1], [0, 0, -20, 1]], np.float32)
    demo = Demo(TASK, frames, np.zeros((5, 4), np.float32), actions, "test#0")
    src = ActionSource([demo], word_actor.action_template, word_actor.state_template)
    assert src.clipped == 2 and "2 of 20 action values" in src.clip_report()
    with pytest.raises(DatasetError, match="actions of 3"):
        ActionSource([Demo(TASK, frames, np.zeros((5, 4)), actions[:, :3], "x#1")], word_actor.action_template,
                     word_actor.state_template)


@pytest.mark.slow(75)
def test_behaviour_cloning_improves_action_loss(word_actor):
    actor = Actor(VLM.tiny(word_actor.vlm.tokenizer, seed=5))
    inputs = _inputs(8, seed=6)
    rng = np.random.default_rng(6)
    actions = [np.array([*rng.integers(-10, 11, 3), rng.integers(0, 2)], float) for _ in inputs]
    opt = torch.optim.AdamW(actor.parameters(), lr=1e-3)
    losses = []
    actor.train()
    for _ in range(25):
        loss, parts = actor.bc_loss(inputs, actions)
        losses.append(parts["action"])
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert np.isfinite(losses).all() and losses[-1] < 0.6 * losses[0]


def test_actor_train_and_eval_commands(expert_dataset, tmp_path, capsys):
    from vlac.scripts.cli import main

    run = tmp_path / "run"
    main(["actor", "train", "--data", str(expert_dataset), "--out", str(run), "--init", "scratch", "--steps", "3",
          "--batch-size", "4", "--val-every", "3", "--val-episodes", "1", "--threads", "1",
          "--weights", "action:0.6,progress:0.4"])
    model = run / "model"
    assert (model / "value_head.safetensors").is_file()
    from vlac.critic.critic import Critic

    critic = Critic.load(model)  # one checkpoint, two roles
    frames = np.zeros((2, 96, 96, 3), np.uint8)
    assert np.isfinite(critic.progress([(frames[0], frames[1])], "reach the goal")).all()
    hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["step"] == 3  # (3 episodes: none held back for validation, and it says so)
    said = capsys.readouterr()
    assert "3 episodes are too few to hold any back for validation" in said.out + said.err
    # fine-tuning a trained actor on demonstrations (recipes/rl-replay.sh CLONE=: cloning before RL)
    tuned = tmp_path / "tuned"
    main(["actor", "train", "--data", str(expert_dataset), "--out", str(tuned), "--init", str(model), "--steps", "2",
          "--batch-size", "4", "--lr", "1e-3", "--warmup", "0", "--val-every", "2", "--val-episodes", "0",
          "--threads", "1", "--save-dtype", "float32"])
    before, after = Actor.load(model), Actor.load(tuned / "model")
    assert after.action_template.spec == before.action_template.spec
    assert after.vlm.preprocess.camera == before.vlm.preprocess.camera
    a, b = (torch.cat([p.float().flatten() for p in m.vlm.model.parameters()]) for m in (before, after))
    assert 0 < (a - b).abs().sum() < 0.1 * a.abs().sum()  # two small steps from the checkpoint, not a fresh start
    out = tmp_path / "eval"
    main(["actor", "eval", "--tasks", "reach-v3", "--episodes", "2", "--max-steps", "6", "--actor", str(model),
          "--names", "bc", "--critic", "none", "--mean", "--out", str(out), "--record", str(tmp_path / "rec")])
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["mean"] is True  # the report says how the numbers were decoded
    assert "Each number nearest its expected value under the actor's distribution (temperature 1)" in (
        out / "report.md").read_text()
    assert report["overall"]["bc"]["episodes"] == 2
    steps = [json.loads(x)["steps"] for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert steps == [6, 6]  # actions executed: --max-steps 6 is 6 (it read 7), the untrained actor never succeeds
    assert (out / "report.md").read_text().count("reach-v3 / default") == 1 and (out / "success.png").is_file()
    # issue 19's summary across tasks reads these folders: one seed pools its evaluations' episodes
    spec = tmp_path / "headline.json"
    spec.write_text(json.dumps({"reach-v3": {"bc": [{"seed": 0, "rl_episodes": 8, "evals": [str(out), f"{out}:bc"]}]}}))
    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "benchmarks/headline.py", "--spec", str(spec), "--out",
                           str(tmp_path / "h.png")], cwd=root, capture_output=True, text=True, check=True)
    assert "| reach-v3 | bc | 8 | 0.000 | **0.000** ± 0.000 (4) | mean at T=1 |" in done.stdout and (tmp_path / "h.png").is_file()
    greedy = tmp_path / "greedy-eval"  # the same folder as if decoded greedily: not pooled with the mean's
    shutil.copytree(out, greedy)
    report["config"]["mean"] = False
    (greedy / "report.json").write_text(json.dumps(report))
    spec.write_text(json.dumps({"reach-v3": {"bc": [{"seed": 0, "evals": [str(out), str(greedy)]}]}}))
    mixed = subprocess.run([sys.executable, "benchmarks/headline.py", "--spec", str(spec)], cwd=root,
                           capture_output=True, text=True)
    assert mixed.returncode != 0 and "pools evaluations decoded in different ways" in mixed.stderr
    assert f"{greedy}: greedy" in mixed.stderr
    spec.write_text(json.dumps({"reach-v3": {"bc": [{"evals": [f"{out}:nobody"]}]}}))
    bad = subprocess.run([sys.executable, "benchmarks/headline.py", "--spec", str(spec)], cwd=root,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "no checkpoint named 'nobody'; it has: bc" in bad.stderr
    # the same start states paired: the copy solves the first start the actor failed (by hand), and one
    # start it never ran is left out of the pairs
    better = tmp_path / "better-eval"
    shutil.copytree(out, better)
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    rows[0]["success"] = True
    rows.append({**rows[1], "seed": 123456789, "success": True})
    (better / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paired = subprocess.run([sys.executable, "benchmarks/paired_success.py", "--arm", f"bc={out}",
                             "--arm", f"better={better}:bc"], cwd=root, capture_output=True, text=True, check=True)
    assert "| bc | 0 / 2 | 0.000 |" in paired.stdout and "| better | 2 / 3 | 0.667 |" in paired.stdout
    assert "| bc | better | 2 | 0 | 1 | 1.000 |" in paired.stdout, paired.stdout
    paired = subprocess.run([sys.executable, "benchmarks/paired_success.py", "--arm", f"bc={out}", "--arm",
                             f"greedy={greedy}"], cwd=root, capture_output=True, text=True)
    assert paired.returncode != 0 and "decoded in different ways" in paired.stderr
    sign_test = runpy.run_path(str(root / "benchmarks" / "paired_success.py"))["sign_test"]
    assert sign_test(23, 9) == pytest.approx(0.0201, abs=1e-4) and sign_test(0, 0) == 1.0
    headline = runpy.run_path(str(root / "benchmarks" / "headline.py"))
    seeds = [headline["Seed"](0, 200, 30, 40), headline["Seed"](1, 96, 18, 40)]
    assert headline["pooled"](seeds) == (0.6, pytest.approx((0.6 * 0.4 / 80) ** 0.5), 80)
    from vlac.data.dataset import LeRobotDataset

    rec = LeRobotDataset(tmp_path / "rec")
    assert rec.num_episodes == 2 and rec.episode(0).action.shape[1] == 4
    # --codec: the actor reads each frame as the dataset's video gives it back
    from vlac.data.video import roundtrip
    from vlac.sim.actor_eval import ActorEvalConfig, run_batch

    actor = Actor.load(model)
    raw, coded = (run_batch(actor, "reach-v3", "default", [3], ActorEvalConfig(out="", max_steps=2, codec=c))[0]
                  for c in (False, True))
    assert np.array_equal(coded.frames[0], roundtrip(raw.frames[:1])[0]) and not np.array_equal(coded.frames[0], raw.frames[0])
    main(["actor", "eval", "--tasks", "reach-v3", "--episodes", "1", "--max-steps", "2", "--actor", str(model),
          "--critic", "none", "--codec", "--out", str(tmp_path / "coded")])
    assert "went through the dataset's video codec" in (tmp_path / "coded" / "report.md").read_text()
    with pytest.raises(SystemExit, match="template"):
        main(["actor", "train", "--data", str(expert_dataset), "--out", str(tmp_path / "r2"), "--init", "scratch",
              "--steps", "1", "--action-template", "{x: 3mm}"])
