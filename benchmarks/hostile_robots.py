"""A running `vlac rl` against hostile and broken robots on 127.0.0.1: what each input does to the
run, and the loop's memory under huge frames. One real run (Ray, ZeroMQ, the built-in models, one
simulated robot of its own), attacked from this process; then Ctrl-C (open episodes and
loop_stats.json must be saved) and a second run killed with SIGKILL (its robot must not outlive it).

    python benchmarks/hostile_robots.py [--out runs/hostile] [--big-frames 100]

Prints a markdown table (input, what happened) and writes it with the figures to OUT/hostile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from vlac.transport import protocol as proto
from vlac.transport.client import RobotClient


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_run(out: Path, episodes: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "--robots", "1",
           "--episodes", str(episodes), "--episodes-per-update", "100", "--max-steps", "20", "--eval-episodes", "0",
           "--lost-after", "60"]
    return subprocess.Popen(cmd, stdout=open(out.with_suffix(".log"), "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "TQDM_DISABLE": "1"})


def wait_file(path: Path, seconds: float) -> str:
    end = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)
    return path.read_text().strip()


def raw_reply(address: str, ident: bytes, payload: bytes, seconds: float = 5.0) -> str:
    """Send one raw frame; the gateway's answer (an error code) or what happened instead."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        sock.send(payload)
        if not sock.poll(int(seconds * 1000)):
            return "no reply (connection dropped by ZeroMQ's message size limit)"
        reply = proto.decode(sock.recv())
        return f"error reply `{reply.get('code')}`"
    finally:
        sock.close(0)


def client_errors(client: RobotClient, seconds: float = 10.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not client.errors:
        client.poll(50)
    return ", ".join(sorted({f"error reply `{code}`" for _, code, _ in client.errors})) or "no reply"


def hello(robot: str, **kw) -> dict:
    return {"v": 1, "type": "hello", "robot": robot, "embodiment": "sim-arm", "cameras": ["main"],
            "task": "reach the goal", "state_dim": 4, "action_dim": 4, **kw}


def attack(address: str, loop_pid: int, big_frames: int) -> list[tuple[str, str]]:
    rows = []
    rows.append(("random bytes", raw_reply(address, b"x1", os.urandom(2000))))
    rows.append(("truncated message", raw_reply(address, b"x2", proto.encode(hello("x2"))[:-7])))
    rows.append(("50 MB message", raw_reply(address, b"x3", b"\0" * (50 << 20))))
    rows.append(("protocol version 1.0", raw_reply(address, b"x4", msgpack.packb({**hello("x4"), "v": 1.0}))))
    rows.append(("protocol version true", raw_reply(address, b"x5", msgpack.packb({**hello("x5"), "v": True}))))
    rows.append(("hello with an empty task", raw_reply(address, b"x6", proto.encode(hello("x6", task="")))))
    long_task = proto.encode(hello("x7", task="pick " * 4500))
    rows.append(("hello with a 22.5 KB task", raw_reply(address, b"x7", long_task)))
    c = RobotClient(address, "x8", "sim-arm", ["main"], "reach the goal", 4, 4)
    c.wait_welcome(10)
    for name, kw in [("1x1 frame", {"images": {"main": np.zeros((1, 1, 3), np.uint8)}}),
                     ("NaN capture time", {"t": float("nan")}), ("obs_id 2^64-1", {"obs_id": 2**64 - 1}),
                     ("obs_id -1", {"obs_id": -1})]:
        c.errors.clear()
        msg = {"type": "obs", "robot": "x8", "obs_id": 0, "episode": 0, "step": 0, "t": time.time(),
               "images": {"main": np.zeros((96, 96, 3), np.uint8)}, "state": np.zeros(4, np.float32), **kw}
        c._send(msg)
        rows.append((name, client_errors(c)))
    c.close()
    # huge frames in one open episode: the loop's memory before, at its peak and after
    big = RobotClient(address, "big", "sim-arm", ["main"], "reach the red goal point with the gripper", 4, 4)
    big.wait_welcome(10)
    before = peak = rss_mb(loop_pid)
    frame = np.random.default_rng(0).integers(0, 255, (2236, 2236, 3), dtype=np.uint8)  # 15.0 MB
    big.start_episode(0)
    t0 = time.monotonic()
    for k in range(big_frames):
        oid = big.send_obs({"main": frame}, np.zeros(4), episode=0, step=k, executed=None)
        big.wait_action(oid, 10.0)
        peak = max(peak, rss_mb(loop_pid))
    big.end_episode(0, "limit")
    big.close()
    time.sleep(30)
    after = rss_mb(loop_pid)
    rows.append((f"{big_frames} observations of 15 MB in one episode",
                 f"loop RSS {before:.0f} MB -> peak {peak:.0f} MB -> {after:.0f} MB 30 s after; "
                 f"{len(big.resets)} reset(s) (reason limit) from the episode cap; {time.monotonic() - t0:.0f} s"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/hostile")
    ap.add_argument("--big-frames", type=int, default=100)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    loop = start_run(run, 10_000)
    address = wait_file(run / "gateway.txt", 300)
    rows = attack(address, loop.pid, args.big_frames)
    rows.append(("the run after all of the above", "still running" if loop.poll() is None else f"exited {loop.poll()}"))
    loop.send_signal(signal.SIGINT)  # Ctrl-C: open episodes persisted, loop_stats.json written
    loop.wait(timeout=300)
    stats = json.loads((run / "loop_stats.json").read_text()) if (run / "loop_stats.json").exists() else {}
    rows.append(("Ctrl-C of the run", f"exit {loop.returncode}; loop_stats.json "
                 f"{'written' if stats else 'missing'}; gateway_errors {stats.get('gateway_errors')}, "
                 f"episodes_capped {stats.get('episodes_capped')}"))
    # kill -9 of a whole run: its simulated robot must stop too
    second = out / "killed"
    loop = start_run(second, 10_000)
    wait_file(second / "gateway.txt", 300)
    time.sleep(5)
    robots = subprocess.run(["pgrep", "-f", "--", f"--parent-pid {loop.pid}"], capture_output=True,
                            text=True).stdout.split()
    robots = [int(p) for p in robots if int(p) != loop.pid]
    loop.kill()
    loop.wait()
    time.sleep(10)
    alive = [p for p in robots if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    rows.append(("kill -9 of `vlac rl`", f"{len(robots)} simulated robot(s) before, {len(alive)} alive 10 s after"))
    for p in alive:
        os.kill(p, signal.SIGKILL)
    print("| input or fault | result |\n|---|---|")
    for name, result in rows:
        print(f"| {name} | {result} |")
    (out / "hostile.json").write_text(json.dumps({"rows": rows, "loop_stats": stats}, indent=1))


if __name__ == "__main__":
    main()
