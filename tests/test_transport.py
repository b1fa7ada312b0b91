"""The robot link over real ZeroMQ sockets on 127.0.0.1: protocol round trips, rejection of bad
messages, re-registration after a gateway restart, CURVE, and a robot driver's import footprint."""

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from vlac.transport import protocol as proto
from vlac.transport.client import RobotClient
from vlac.transport.gateway import Gateway
from vlac.transport.link import CurveKeys, is_loopback, load_robot_keys


def _obs(robot="r1", **kw):
    msg = {"type": "obs", "robot": robot, "obs_id": 3, "episode": 0, "step": 3, "t": 1.5,
           "images": {"main": np.arange(96 * 96 * 3, dtype=np.uint8).reshape(96, 96, 3)},
           "state": np.array([1.0, 2.0, 3.0, 0.5], np.float32)}
    msg.update(kw)
    return msg


def _hello(**kw):
    return {"v": 1, "type": "hello", "robot": "r1", "embodiment": "sim-arm", "cameras": ["main"],
            "task": "reach the goal", "state_dim": 4, "action_dim": 4, **kw}


def test_round_trip_keeps_arrays_exact():
    msg = _obs()
    back = proto.validate(proto.decode(proto.encode(msg)))
    assert np.array_equal(back["images"]["main"], msg["images"]["main"]) and back["images"]["main"].dtype == np.uint8
    assert proto.validate(proto.decode(proto.encode(_obs(executed=-1))))["executed"] == -1  # held still
    sim = {"reward": 3.25, "success": False}  # a simulator's ground truth, for the oracle arms
    assert proto.validate(proto.decode(proto.encode(_obs(sim=sim))))["sim"] == sim
    assert np.array_equal(back["state"], msg["state"]) and back["v"] == proto.PROTOCOL_VERSION


@pytest.mark.parametrize("data, code", [
    (b"\xc1garbage", "undecodable"),
    (msgpack.packb([1, 2]), "not-a-map"),
    (msgpack.packb({"v": 99, "type": "obs", "robot": "r1"}), "version"),
    (proto.encode({"type": "dance", "robot": "r1"}), "unknown-type"),
    (proto.encode({"type": "heartbeat", "robot": "r1", "t": "now"}), "bad-field"),
    (proto.encode(_obs(images={"main": np.zeros((4, 4), np.uint8)})), "bad-image"),
    (proto.encode(_obs(state=np.array([np.nan, 1.0]))), "bad-state"),
    (proto.encode({"type": "episode_end", "robot": "r1", "episode": 0, "reason": "bored"}), "bad-field"),
    (proto.encode(_obs(images={})), "bad-image"),
    (proto.encode(_obs(executed="yes")), "bad-field"),
    (proto.encode(_obs(executed=-2)), "bad-field"),
    (proto.encode({"type": "hello", "robot": "r1", "embodiment": "sim-arm", "cameras": [], "task": "t",
                   "state_dim": 4, "action_dim": 4}), "bad-field"),
    (proto.encode({"type": "hello", "robot": "r1", "embodiment": "sim-arm", "cameras": [["main"]], "task": "t",
                   "state_dim": 4, "action_dim": 4}), "bad-field"),
    # found by a hostile robot: each of these passed before, and some ended the whole RL run
    (msgpack.packb({**_hello(), "v": 1.0}), "version"),
    (msgpack.packb({**_hello(), "v": True}), "version"),
    (proto.encode(_hello(task="")), "bad-text"),
    (proto.encode(_hello(task="   ")), "bad-text"),
    (proto.encode(_hello(task="pick " * 4500)), "bad-text"),  # 22.5 KB: seconds per action, every robot stalled
    (proto.encode({"type": "episode_start", "robot": "r1", "episode": 0, "task": ""}), "bad-text"),
    (proto.encode({"type": "episode_start", "robot": "r1", "episode": 0, "task": "t", "scene": 7}), "bad-text"),
    (proto.encode({"type": "episode_start", "robot": "r1", "episode": 0, "task": "t", "scene": "s" * 100}), "bad-text"),
    (proto.encode(_hello(embodiment="x" * 1000)), "bad-text"),
    (proto.encode(_hello(state_dim=0)), "bad-field"),
    (proto.encode(_hello(action_dim=10**9)), "bad-field"),
    (proto.encode(_hello(cameras=[f"c{k}" for k in range(100)])), "bad-field"),
    (proto.encode(_obs(images={"main": np.zeros((1, 1, 3), np.uint8)})), "bad-image"),
    (proto.encode(_obs(images={"main": np.zeros((96, 96, 3), np.float32)})), "bad-image"),
    (proto.encode(_obs(images={"main": np.zeros((96, 96, 4), np.uint8)})), "bad-image"),
    (proto.encode(_obs(t=float("nan"))), "bad-field"),
    (proto.encode(_obs(t=float("inf"))), "bad-field"),
    (proto.encode({"type": "heartbeat", "robot": "r1", "t": float("-inf")}), "bad-field"),
    (proto.encode(_obs(obs_id=-1)), "bad-field"),
    (proto.encode(_obs(obs_id=2**64 - 1)), "bad-field"),
    (proto.encode(_obs(episode=-5)), "bad-field"),
    (proto.encode(_obs(executed=2**64 - 1)), "bad-field"),
    (proto.encode(_obs(state=np.zeros(10_000, np.float32))), "bad-state"),
    (proto.encode(_obs(robot="r" * 300)), "no-robot"),
    (proto.encode(_obs(sim={"reward": float("nan"), "success": True})), "bad-field"),
    (proto.encode(_obs(sim={"reward": 1.0, "success": 1})), "bad-field"),
])
def test_bad_messages_are_named(data, code):
    with pytest.raises(proto.ProtocolError) as e:
        proto.validate(proto.decode(data))
    assert e.value.code == code


def test_oversized_message_rejected_before_decoding():
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        proto.decode(b"x" * 100, max_bytes=10)


def test_oversized_message_gets_an_error_reply():
    gw = Gateway("tcp://127.0.0.1:0", max_bytes=100_000)
    client = RobotClient(gw.address, "big", "sim-arm", ["main"], "t", 4, 4)
    try:
        _pump(gw, client, until=lambda e: client.session is not None)
        client.send_obs({"main": np.zeros((200, 200, 3), np.uint8)}, np.zeros(4), episode=0, step=0)  # 1.2x the limit
        _pump(gw, client, until=lambda e: gw.errors["too-large"] == 1 and client.errors)
        assert gw.errors["too-large"] == 1 and client.errors[-1][1] == "too-large"
    finally:
        client.close()
        gw.close()


def _pump(gw, client, seconds=2.0, until=None):
    events = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events += gw.poll(20)
        client.poll(0)
        if until and until(events):
            break
    return events


def test_gateway_turns_away_a_robot_the_policy_cannot_serve():
    gw = Gateway("tcp://127.0.0.1:0", expect_dims=(4, 4))
    wrong = RobotClient(gw.address, "arm7", "6dof", ["main"], "reach the goal", 8, 7)
    right = RobotClient(gw.address, "r1", "sim-arm", ["main"], "reach the goal", 4, 4)
    try:
        _pump(gw, wrong, until=lambda e: bool(wrong.errors))
        assert gw.errors["incompatible"] >= 1 and "arm7" not in gw.robots and wrong.session is None
        assert "state_dim 8" in wrong.refused and "reads 4 state values" in wrong.refused
        _pump(gw, right, until=lambda e: right.session is not None)
        assert "r1" in gw.robots  # the gateway goes on serving the others
    finally:
        wrong.close()
        right.close()
        gw.close()


def test_gateway_serves_a_robot_and_survives_bad_input():
    gw = Gateway("tcp://127.0.0.1:0")
    client = RobotClient(gw.address, "r1", "sim-arm", ["main"], "reach the goal", 4, 4)
    try:
        ev = _pump(gw, client, until=lambda e: client.session is not None)
        assert client.session == gw.session and [e.kind for e in ev][:1] == ["hello"]
        oid = client.send_obs({"main": np.zeros((96, 96, 3), np.uint8)}, np.zeros(4), episode=0, step=0)
        ev = _pump(gw, client, until=lambda e: any(x.kind == "obs" for x in e))
        obs = [e for e in ev if e.kind == "obs"][0]
        assert obs.msg["obs_id"] == oid
        gw.send_action("r1", oid, [1, 2, 3, 1], t_obs=obs.msg["t"])
        assert client.wait_action(oid, 2.0).tolist() == [1, 2, 3, 1]
        # A raw socket speaking garbage, a wrong state size, a robot that skipped hello.
        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.IDENTITY, b"intruder")
        raw.connect(gw.address)
        raw.send(b"\x00\x01 not msgpack")
        raw.send(proto.encode(_obs(robot="intruder")))
        client._send(_obs(robot="r1", state=np.zeros(7, np.float32)))
        _pump(gw, client, seconds=3.0, until=lambda e: sum(gw.errors.values()) >= 3
              and any(code == "bad-obs" for _, code, _ in client.errors))
        assert gw.errors["undecodable"] == 1 and gw.errors["unregistered"] == 1 and gw.errors["bad-obs"] == 1
        assert raw.poll(2000) and proto.decode(raw.recv())["type"] == "error"
        assert any(code == "bad-obs" for _, code, _ in client.errors)
        raw.close(0)
        # still serving
        oid = client.send_obs({"main": np.zeros((96, 96, 3), np.uint8)}, np.zeros(4), episode=0, step=1)
        assert any(e.kind == "obs" for e in _pump(gw, client, until=lambda e: any(x.kind == "obs" for x in e)))
    finally:
        client.close()
        gw.close()


def test_robot_registers_again_after_gateway_restart():
    gw = Gateway("tcp://127.0.0.1:0")
    addr = gw.address
    client = RobotClient(addr, "r2", "sim-arm", ["main"], "reach the goal", 4, 4, reconnect_max_ms=200)
    try:
        _pump(gw, client, until=lambda e: client.session is not None)
        first = client.session
        gw.close()
        # observations while the gateway is down are dropped, never block
        t0 = time.monotonic()
        for k in range(50):
            client.send_obs({"main": np.zeros((96, 96, 3), np.uint8)}, np.zeros(4), episode=0, step=k)
        assert time.monotonic() - t0 < 1.0 and client.dropped > 0
        gw = Gateway(addr)
        end = time.monotonic() + 10
        while time.monotonic() < end and client.session in (None, first):
            client.send_obs({"main": np.zeros((96, 96, 3), np.uint8)}, np.zeros(4), episode=0, step=99)
            _pump(gw, client, seconds=0.2)
        assert client.session == gw.session != first and "r2" in gw.robots
    finally:
        client.close()
        gw.close()


def test_episode_starts_and_ends_wait_for_the_gateway_and_go_before_later_observations():
    """With the gateway down, observations are dropped but an episode's start and end wait; once a
    gateway welcomes the robot they arrive in order, before any later observation, and an end sent
    just before the robot closes still arrives."""
    gw = Gateway("tcp://127.0.0.1:0")
    addr = gw.address
    client = RobotClient(addr, "r3", "sim-arm", ["main"], "reach the goal", 4, 4, reconnect_max_ms=200)
    frame = {"main": np.zeros((96, 96, 3), np.uint8)}
    try:
        _pump(gw, client, until=lambda e: client.session is not None)
        gw.close()
        end = time.monotonic() + 5
        while time.monotonic() < end and client.session is not None:  # the robot notices the link dropped
            client.poll(50)
        assert client.session is None
        client.start_episode(1, scene="s7")
        for k in range(5):
            client.send_obs(frame, np.zeros(4), episode=1, step=k)
        client.end_episode(1, "limit", success=False)
        client.start_episode(2, scene="s8")
        assert [m["type"] for m in client.pending] == ["episode_start", "episode_end", "episode_start"]
        assert client.dropped >= 5
        gw = Gateway(addr)
        ev = _pump(gw, client, seconds=10.0, until=lambda e: any(x.kind == "episode_start" and
                                                                  x.msg["episode"] == 2 for x in e))
        kinds = [(e.kind, e.msg.get("episode"), e.msg.get("scene")) for e in ev]
        assert kinds == [("hello", None, None), ("episode_start", 1, "s7"), ("episode_end", 1, None),
                         ("episode_start", 2, "s8")]
        assert not client.pending and gw.errors["unregistered"] == 0
        oid = client.send_obs(frame, np.zeros(4), episode=2, step=0)
        ev = _pump(gw, client, until=lambda e: any(x.kind == "obs" for x in e))
        assert [(e.kind, e.msg["obs_id"]) for e in ev if e.kind == "obs"] == [("obs", oid)]
        client.end_episode(2, "done", success=True)
        client.close()
        ev, end = [], time.monotonic() + 5
        while time.monotonic() < end and not any(e.kind == "episode_end" for e in ev):
            ev += gw.poll(20)
        assert [(e.kind, e.msg["episode"], e.msg["success"]) for e in ev] == [("episode_end", 2, True)]
    finally:
        client.close()
        gw.close()


def test_a_robot_reported_lost_that_speaks_again_is_taken_back():
    """A robot silent past ``lost_after_s`` (a slow reset on a busy machine) is reported lost; its next
    message, here an episode's start, is accepted on the registration it gave, not refused."""
    gw = Gateway("tcp://127.0.0.1:0", lost_after_s=0.3)
    client = RobotClient(gw.address, "r4", "sim-arm", ["main"], "reach the goal", 4, 4)
    try:
        _pump(gw, client, until=lambda e: client.session is not None)
        ev, end = [], time.monotonic() + 5
        while time.monotonic() < end and not any(e.kind == "lost" for e in ev):
            ev += gw.poll(50)  # the robot says nothing meanwhile
        assert any(e.kind == "lost" for e in ev) and "r4" not in gw.robots
        client.start_episode(3, scene="s1")
        ev = _pump(gw, client, until=lambda e: any(x.kind == "episode_start" for x in e))
        assert [(e.kind, e.msg["episode"], e.msg["scene"]) for e in ev] == [("episode_start", 3, "s1")]
        assert gw.errors["unregistered"] == 0 and gw.returned == 1 and gw.robots["r4"].task == "reach the goal"
    finally:
        client.close()
        gw.close()


@pytest.mark.parametrize("address, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
    ("tcp://127.5.6.7:0", True), ("ipc:///tmp/vlac.sock", True),
    ("tcp://127.0.0.1:0;0.0.0.0:0", False),  # ZeroMQ binds both endpoints: this one bound 0.0.0.0
    ("tcp://127.0.0.1:0;127.0.0.1:6000", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://127.0.0.1.example.com:5555", False), ("tcp://eth0:5555", False), ("udp://127.0.0.1:5555", False),
])
def test_loopback_rule_reads_every_endpoint(address, local):
    assert is_loopback(address) is local


def test_curve_links_and_loopback_rule(tmp_path):
    with pytest.raises(ValueError, match="CURVE"):
        Gateway("tcp://0.0.0.0:0")
    with pytest.raises(ValueError, match="CURVE"):
        Gateway("tcp://127.0.0.1:0;0.0.0.0:0")
    with pytest.raises(ValueError, match="robot-keys"):  # encryption without authentication: not enough
        Gateway("tcp://0.0.0.0:0", keys=CurveKeys.generate())
    with pytest.raises(ValueError, match="CURVE"):
        RobotClient("tcp://10.1.2.3:5555", "r", "sim-arm", ["main"], "t", 4, 4)
    server, robot, stranger = CurveKeys.generate(), CurveKeys.generate(), CurveKeys.generate()
    server.save(tmp_path / "gw.key")
    assert CurveKeys.load(tmp_path / "gw.key").secret == server.secret
    gw = Gateway("tcp://127.0.0.1:0", keys=server, allowed_clients={robot.public: "good"})
    good = RobotClient(gw.address, "good", "sim-arm", ["main"], "t", 4, 4, server_key=server.public, keys=robot)
    bad = RobotClient(gw.address, "bad", "sim-arm", ["main"], "t", 4, 4, server_key=server.public, keys=stranger)
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end and (good.session is None or not gw.admitted.refused):
            gw.poll(20)
            good.poll(0)
            bad.poll(0)
        assert good.session == gw.session and bad.session is None and "bad" not in gw.robots
        assert gw.admitted.refused >= 1  # the stranger's handshake, counted
    finally:
        good.close()
        bad.close()
        gw.close()


def test_a_robot_key_admits_only_its_own_robot_id(tmp_path):
    """A robot holding arm-1's key registered as arm-2 and its episodes were recorded under arm-2:
    each key is now bound to the id it was made for (``vlac robot keys --name ID``)."""
    server, arm1, arm2 = CurveKeys.generate(), CurveKeys.generate(), CurveKeys.generate()
    arm1.save(tmp_path / "arm-1.pub", public_only=True)
    arm2.save(tmp_path / "two.pub", public_only=True)
    admitted = load_robot_keys([str(tmp_path / "arm-1.pub"), f"arm-2={tmp_path / 'two.pub'}", ""])
    assert admitted == {arm1.public: "arm-1", arm2.public: "arm-2"}
    with pytest.raises(ValueError, match="both 'arm-1' and 'arm-9'"):
        load_robot_keys([str(tmp_path / "arm-1.pub"), f"arm-9={tmp_path / 'arm-1.pub'}"])
    gw = Gateway("tcp://127.0.0.1:0", keys=server, allowed_clients=admitted)
    impostor = RobotClient(gw.address, "arm-2", "sim-arm", ["main"], "t", 4, 4, server_key=server.public, keys=arm1)
    honest = RobotClient(gw.address, "arm-1", "sim-arm", ["main"], "t", 4, 4, server_key=server.public, keys=arm1)
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end and (honest.session is None or not impostor.errors):
            gw.poll(20)
            honest.poll(0)
            impostor.poll(0)
        assert honest.session == gw.session and "arm-1" in gw.robots
        assert impostor.session is None and "arm-2" not in gw.robots and gw.errors["identity"] >= 1
        assert "issued to robot 'arm-1', not 'arm-2'" in impostor.errors[-1][2]
    finally:
        impostor.close()
        honest.close()
        gw.close()


def test_robot_client_imports_without_torch_or_ray():
    code = ("import sys; import vlac.transport.client, vlac.transport.protocol; "
            "bad = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
