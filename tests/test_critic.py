"""Component and end-to-end tiers for the critic: a real tiny InternVL built from its config,
the shipped default checkpoint, and every ``vlac critic`` command on generated datasets."""

import json

import numpy as np
import pytest
import torch

from vlac.critic.critic import DEFAULT_CHECKPOINT, Critic, Reference
from vlac.train.samples import SampleSource, load_trajectories
from vlac.data.dataset import LeRobotDataset
from vlac.data.video import encode_video
from vlac.model import CheckpointError
from vlac.model.prompts import done_prompt, goal_done_prompt, one_shot_pair_prompt, pair_prompt
from vlac.model.tokenizer import train_tokenizer
from vlac.model.preprocess import to_rgb_uint8
from vlac.model.vlm import VLM, Prompt
from vlac.scripts.cli import main


@pytest.fixture(scope="module")
def tiny_vlm():
    return VLM.tiny(train_tokenizer(["reach the red goal point with the gripper"]), seed=0)


@pytest.fixture(scope="module")
def default_critic():
    return Critic.load()


def test_tiny_model_trains_and_round_trips(tiny_vlm, expert_dataset, tmp_path):
    vlm = tiny_vlm
    src = SampleSource(load_trajectories([LeRobotDataset(expert_dataset)], progress=False))
    prompts, answers = src.progress(np.random.default_rng(0), groups=2)
    batch = vlm.encode(prompts, answers)
    before = {k: v.detach().clone() for k, v in vlm.model.named_parameters()}
    opt = torch.optim.AdamW(vlm.model.parameters(), lr=1e-3)
    losses = []
    vlm.model.train()
    for _ in range(5):
        loss = vlm.loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    changed = sum(not torch.equal(before[k], v) for k, v in vlm.model.named_parameters())
    assert changed > 0.9 * len(before)
    vlm.model.eval()
    vlm.save(tmp_path / "fp32")
    again = VLM.load(tmp_path / "fp32")
    with torch.no_grad():
        a, b = vlm.next_token_logits(vlm.encode(prompts)), again.next_token_logits(again.encode(prompts))
    assert torch.allclose(a, b, atol=1e-5)
    vlm.save(tmp_path / "fp16", dtype="float16")
    half = VLM.load(tmp_path / "fp16")
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    with torch.no_grad():
        c = half.next_token_logits(half.encode(prompts))
    assert torch.allclose(a, c, atol=0.05)


def test_image_inputs_are_converted_or_rejected(tiny_vlm):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    assert to_rgb_uint8(np.moveaxis(rgb, -1, 0)).shape == (40, 60, 3)  # channel-first
    assert np.array_equal(to_rgb_uint8(rgb / 255.0), rgb)  # float 0..1
    assert to_rgb_uint8(rgb[..., 0]).shape == (40, 60, 3)  # grey
    assert to_rgb_uint8(np.concatenate([rgb, rgb[..., :1]], -1)).shape == (40, 60, 3)  # RGBA
    with pytest.raises(ValueError, match="float images must be scaled"):
        to_rgb_uint8(rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 4, 4, 3\)"):
        to_rgb_uint8(np.zeros((4, 4, 4, 3), np.uint8))
    # Non-square images of any size are centre-cropped and resized to the model's input.
    assert tiny_vlm.pixel_values([rgb]).shape == (1, 3, 96, 96)
    with pytest.raises(ValueError, match="2 <image> placeholders but 1 images"):
        tiny_vlm.encode([Prompt(pair_prompt("reach"), [rgb])])
    with pytest.raises(ValueError, match="task description is empty"):
        pair_prompt("  ")


def test_bad_checkpoints_are_named(tmp_path, tiny_vlm):
    with pytest.raises(CheckpointError, match="does not exist"):
        Critic.load(tmp_path / "nope")
    tiny_vlm.save(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        Critic.load(tmp_path / "ck")


def test_default_checkpoint_is_small_fp16():
    weights = DEFAULT_CHECKPOINT / "model.safetensors"
    assert weights.stat().st_size < 20e6
    assert (DEFAULT_CHECKPOINT / "README.md").is_file()  # the model card
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    assert cfg["dtype"] == "float16"


def test_prompts_decode_to_well_formed_answers(default_critic, small_dataset):
    ds = LeRobotDataset(small_dataset)
    frames = ds.episode(0).images["main"]
    vlm = default_critic.vlm
    text = vlm.generate_text(Prompt(done_prompt("reach the goal"), [frames[-1]]), max_new_tokens=4)
    assert text.strip() in ("0", "1")
    ref = [frames[0], frames[len(frames) // 2], frames[-1]]
    text = vlm.generate_text(Prompt(one_shot_pair_prompt("reach the goal", [0, 50, 100]),
                                    ref + [frames[0], frames[0], frames[-1]]), max_new_tokens=4)
    assert -100 <= int(text.strip()) <= 100
    p = default_critic.done(frames[:3], "reach the goal")
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    text = vlm.generate_text(Prompt(goal_done_prompt("reach the goal"), [frames[-1], frames[0]]), max_new_tokens=4)
    assert text.strip() in ("0", "1")
    p = default_critic.done(frames[:3], "reach the goal", goal=frames[-1])
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    rich = default_critic.progress([(frames[0], frames[-1])], "reach the goal", decoding="rich")
    greedy = default_critic.progress([(frames[0], frames[-1])], "reach the goal", decoding="greedy")
    assert -1 <= rich[0] <= 1 and greedy[0] * 100 == int(greedy[0] * 100)
    assert isinstance(default_critic.describe(frames[0], frames[-1]), str)
    with pytest.raises(ValueError, match="at least 2 frames"):
        default_critic.score_trajectory(frames[:1], "reach the goal")


def test_batched_scores_match_one_by_one(default_critic, small_dataset):
    frames = LeRobotDataset(small_dataset).episode(0).images["main"]
    pairs = [(frames[i], frames[i + 5]) for i in range(0, 30, 5)]
    together = default_critic.progress(pairs, "reach the goal")
    alone = np.concatenate([default_critic.progress([p], "reach the goal") for p in pairs])
    assert np.allclose(together, alone, atol=1e-4)


def test_symmetric_scoring_averages_both_readings(default_critic, small_dataset):
    frames = LeRobotDataset(small_dataset).episode(0).images["main"]
    pairs = [(frames[i], frames[i + 6]) for i in range(0, 24, 6)]
    fwd = default_critic.progress(pairs, "reach the goal")
    rev = default_critic.progress([(b, a) for a, b in pairs], "reach the goal")
    sym = default_critic.progress(pairs, "reach the goal", symmetric=True)
    assert np.allclose(sym, (fwd - rev) / 2, atol=1e-4)
    # Exactly antisymmetric: swapping each pair's images negates the reading.
    swapped = default_critic.progress([(b, a) for a, b in pairs], "reach the goal", symmetric=True)
    assert np.allclose(swapped, -sym, atol=1e-4)
    # One-shot prompts too, and the critic-wide setting is the default of each call.
    ref = Reference.from_episode(frames)
    one = Critic(default_critic.vlm, symmetric=True).progress(pairs, "reach the goal", reference=ref,
                                                             first_frame=frames[0])
    f1 = default_critic.progress(pairs, "reach the goal", reference=ref, first_frame=frames[0])
    r1 = default_critic.progress([(b, a) for a, b in pairs], "reach the goal", reference=ref, first_frame=frames[0])
    assert np.allclose(one, (f1 - r1) / 2, atol=1e-4)


def test_train_command_resumes_exactly(expert_dataset, tmp_path):
    common = ["critic", "train", "--data", str(expert_dataset), "--batch-size", "8", "--val-every", "2",
              "--val-episodes", "0", "--steps", "4", "--warmup", "1",
              "--weights", "progress:0.3,one_shot:0.1,done:0.1,done_goal:0.4,describe:0.1"]
    main(common + ["--out", str(tmp_path / "straight")])
    main(common + ["--out", str(tmp_path / "cut"), "--stop-after", "2"])  # interrupted at step 2
    assert not (tmp_path / "cut" / "model").exists()
    main(common + ["--out", str(tmp_path / "cut")])  # the same command resumes
    state = torch.load(tmp_path / "cut" / "checkpoint" / "trainer.pt", weights_only=False)
    assert state["step"] == 4
    a = VLM.load(tmp_path / "straight" / "checkpoint" / "model").model.state_dict()
    b = VLM.load(tmp_path / "cut" / "checkpoint" / "model").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "tb").is_dir() and (tmp_path / "straight" / "history.jsonl").is_file()
    assert (tmp_path / "straight" / "model" / "model.safetensors").is_file()


@pytest.mark.slow(120)
def test_score_eval_filter_commands(small_dataset, tmp_path, capsys):
    main(["critic", "score", "--dataset", str(small_dataset), "--episode", "0", "--symmetric", "--out",
          str(tmp_path / "s")])
    res = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert res["symmetric"] is True
    assert len(res["values"]) == len(res["deltas"]) + 1 == len(res["done"])
    assert (tmp_path / "s" / "scores.png").stat().st_size > 1000
    frames = LeRobotDataset(small_dataset).episode(0).images["main"]
    encode_video(frames, tmp_path / "clip.mp4", fps=20)
    main(["critic", "score", "--video", str(tmp_path / "clip.mp4"), "--task", "reach the goal",
          "--reference", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "v")])
    assert json.loads((tmp_path / "v" / "scores.json").read_text())["one_shot"] is True
    # every 6th frame pair (the default 3 doubles the scoring and tests nothing more)
    main(["critic", "eval", "--dataset", str(small_dataset), "--skip", "6", "--out", str(tmp_path / "e")])
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["episodes"] == 4 and "seen / gripper-cam / successful" in report["table"]
    assert "frame-index VOC" in (tmp_path / "e" / "report.md").read_text()
    goal = report["done_goal"]["seen"]  # in-context done on the episodes that had a reference
    assert goal["in-context"]["n"] == goal["plain"]["n"] > 0
    assert "In-context done" in (tmp_path / "e" / "report.md").read_text()
    written = (tmp_path / "e" / "report.json").read_text()
    (tmp_path / "e" / "report.md").unlink()
    main(["critic", "report", "--eval", str(tmp_path / "e")])  # rebuilt from episodes.jsonl, same figures
    assert (tmp_path / "e" / "report.json").read_text() == written
    assert "frame-index VOC" in (tmp_path / "e" / "report.md").read_text()
    with pytest.raises(SystemExit, match="needs episodes.jsonl and report.json"):
        main(["critic", "report", "--eval", str(tmp_path / "nope")])
    main(["critic", "calibrate-done", "--episodes", str(tmp_path / "e"), "--out", str(tmp_path / "c")])
    cal = json.loads((tmp_path / "c" / "calibrate.json").read_text())
    assert cal["ungated_at_0.5"]["f1"] == pytest.approx(report["done"]["seen"]["f1"], nan_ok=True)
    assert len(cal["grid"]) == 6 * 7 and cal["frames"] == report["done"]["seen"]["n"]  # the default grid, every frame
    with pytest.raises(SystemExit, match="no episodes.jsonl"):
        main(["critic", "calibrate-done", "--episodes", str(tmp_path / "nope"), "--out", str(tmp_path / "c2")])
    main(["critic", "filter", "--dataset", str(small_dataset), "--out", str(tmp_path / "f")])
    flt = json.loads((tmp_path / "f" / "filter.json").read_text())
    assert len(flt["episodes"]) == 4 and all("voc" in r for r in flt["episodes"])


def test_score_bad_input(small_dataset, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SystemExit, match="cannot be read"):
        main(["critic", "score", "--video", str(tmp_path / "bad.mp4"), "--task", "x", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--task is required"):
        frames = LeRobotDataset(small_dataset).episode(0).images["main"]
        encode_video(frames, tmp_path / "ok.mp4", fps=20)
        main(["critic", "score", "--video", str(tmp_path / "ok.mp4"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="has 1 frame"):
        encode_video(frames[:1], tmp_path / "one.mp4", fps=20)
        main(["critic", "score", "--video", str(tmp_path / "one.mp4"), "--task", "x", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="out of range"):
        main(["critic", "score", "--dataset", str(small_dataset), "--episode", "9", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="missing"):
        (tmp_path / "ck").mkdir()
        (tmp_path / "ck" / "config.json").write_text("{}")
        main(["critic", "score", "--dataset", str(small_dataset), "--critic", str(tmp_path / "ck"),
              "--out", str(tmp_path)])


def test_score_a_folder_of_frames_in_numeric_order(small_dataset, tmp_path, capsys):
    from PIL import Image

    ds = LeRobotDataset(small_dataset)
    ep = ds.episode(0)
    frames = ep.images["main"][:12]
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in np.random.default_rng(0).permutation(len(frames)):  # written out of order; names frame_2 < frame_10
        Image.fromarray(frames[k]).save(folder / f"frame_{k}.png")
    (folder / "notes.txt").write_text("not a frame")
    before = torch.get_num_threads()
    try:  # every command that runs a model sizes torch's threads when told to
        main(["critic", "score", "--video", str(folder), "--task", ep.task, "--threads", "1", "--out", str(tmp_path / "f")])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    got = json.loads((tmp_path / "f" / "scores.json").read_text())
    from vlac.critic.critic import Critic

    want = Critic.load().score_trajectory(frames, ep.task, skip=3)  # the same frames in their true order
    np.testing.assert_allclose(got["deltas"], want.deltas, atol=1e-4)  # scores.json keeps 4 decimals
    capsys.readouterr()
    main(["critic", "score", "--video", str(folder), "--task", "scoop the rice into the rice cooker", "--skip", "6",
          "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert "only 2 pair(s)" in err and "lacks" in err and "rice" in err and "cooker" in err
    Image.fromarray(frames[0][:50]).save(folder / "frame_99.png")
    with pytest.raises(SystemExit, match="frame_99.png is 96x50 but frame_0.png is 96x96"):
        main(["critic", "score", "--video", str(folder), "--task", ep.task, "--out", str(tmp_path / "h")])


def test_digit_tokenizers_are_read_digit_by_digit(digit_tokenizer):
    vlm = VLM.tiny(digit_tokenizer, seed=0)
    critic = Critic(vlm)
    assert critic.number_ids is None  # "42" is two tokens here
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(2))
    prompts = [Prompt(pair_prompt("reach the goal"), [a, b])]
    batch = vlm.encode(prompts, answers=["-42"])
    opt = torch.optim.AdamW(vlm.model.parameters(), lr=2e-3)
    vlm.model.train()
    for _ in range(40):  # teach it one answer, then read it back through the digit path
        vlm.loss(batch).backward()
        opt.step()
        opt.zero_grad()
    vlm.model.eval()
    assert critic.progress([(a, b)], "reach the goal", decoding="greedy")[0] == pytest.approx(-0.42)
    assert critic.progress([(a, b)], "reach the goal", decoding="rich")[0] == pytest.approx(-0.42, abs=0.02)


def test_eval_skips_an_unreadable_episode_and_keeps_the_rest(small_dataset, tmp_path):
    """`vlac critic eval` aborted on one damaged episode, losing those already scored (issue 24)."""
    import shutil

    from vlac.eval.critic_eval import EvalConfig, evaluate

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    ds = LeRobotDataset(data)
    video = ds.video_path(ds.episodes.iloc[1], "observation.images.main")
    video.write_bytes(video.read_bytes()[:200])  # cut short, as a killed copy leaves it
    report = evaluate(EvalConfig(dataset=[str(data)], out=str(tmp_path / "e"), one_shot=False, max_episodes=2))
    assert len(report["config"]["skipped"]) == 1 and "episode 1" in report["config"]["skipped"][0]
    assert len((tmp_path / "e" / "episodes.jsonl").read_text().splitlines()) == 1
    assert "Skipped 1 unreadable episode(s)" in (tmp_path / "e" / "report.md").read_text()


def test_eval_keeps_episodes_without_a_success_flag_apart_from_failures(small_dataset, tmp_path):
    """A real robot's episodes carry no success flag; `vlac critic eval` counted them as failures
    (its success-against-failure rows then compared successes with unknowns)."""
    from dataclasses import replace

    from vlac.data.lerobot_format import SUCCESS_KEY
    from vlac.data.writer import DatasetWriter
    from vlac.eval.critic_eval import EvalConfig, evaluate

    ds = LeRobotDataset(small_dataset)
    features = {k: v for k, v in ds.features.items() if k != SUCCESS_KEY}
    with DatasetWriter(tmp_path / "robot", features, fps=ds.fps) as w:
        for i in (0, 1):
            ep = ds.episode(i)
            w.add_episode(replace(ep, success=None, timestamp=None, meta={**ep.meta, "success": None}))
    evaluate(EvalConfig(dataset=[str(tmp_path / "robot")], out=str(tmp_path / "e"), one_shot=False, threads=1))
    rows = [json.loads(x) for x in (tmp_path / "e" / "episodes.jsonl").read_text().splitlines()]
    assert [r["success"] for r in rows] == [None, None] and "done" not in rows[0]
    md = (tmp_path / "e" / "report.md").read_text()
    assert "no success flag" in md and "/ failed" not in md and "/ successful" not in md
