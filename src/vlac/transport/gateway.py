"""The gateway: one ROUTER socket that every robot connects to (protocol in ``protocol.py``).

It registers robots, validates every message (a malformed, oversized or out-of-protocol message
gets an ``error`` reply and is counted, never raised), tracks liveness by heartbeats, and hands
the RL loop a stream of events; it sends actions and reset requests back. A robot silent for
``lost_after_s`` is reported lost (its open episode ends there); if it speaks again it is taken
back on the registration it gave (``returned``), so a robot stalled for a few seconds (a slow
reset on a busy machine) does not have its next message, often an episode's start, refused.

    >>> gw = Gateway("tcp://127.0.0.1:0")              # port 0: pick a free one (gw.address)
    >>> for ev in gw.poll(timeout_ms=10): ...           # Event("obs", robot, msg), ...
    >>> gw.send_action("arm-1", obs_id, action, t_obs)
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from vlac.transport import protocol as proto
from vlac.transport.link import CurveKeys, is_loopback


@dataclass
class RobotInfo:
    robot: str
    embodiment: str
    cameras: list
    task: str
    state_dim: int
    action_dim: int
    state_names: list | None = None
    action_names: list | None = None
    last_seen: float = field(default_factory=time.monotonic)
    episode: int | None = None


@dataclass
class Event:
    kind: str  # hello | obs | episode_start | episode_end | lost
    robot: str
    msg: dict


class Gateway:
    def __init__(self, address: str = "tcp://127.0.0.1:0", keys: CurveKeys | None = None,
                 allowed_clients: dict[bytes, str] | None = None, max_bytes: int = proto.MAX_MESSAGE_BYTES,
                 lost_after_s: float = 5.0, expect_dims: tuple[int, int] | None = None, expect_camera: str = ""):
        if (keys is None or allowed_clients is None) and not is_loopback(address):
            raise ValueError(f"binding the gateway to {address} (not loopback) requires CURVE encryption and "
                             "authentication: pass --keys FILE (the gateway's key pair) and --robot-keys FILES "
                             "(the public keys of the robots to admit); create both with `vlac robot keys`")
        self._ctx = zmq.Context()
        self._auth = None
        s = self._ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply to a vanished robot raises instead of vanishing
        # Messages over max_bytes get an error reply; beyond twice that ZeroMQ drops the peer. At
        # most RCVHWM messages wait per robot (a robot in lock-step has one in flight): a robot
        # flooding large frames holds at most 8 x 2 x max_bytes of the gateway's memory.
        s.setsockopt(zmq.MAXMSGSIZE, 2 * max_bytes)
        s.setsockopt(zmq.RCVHWM, 8)
        self.admitted = _Admitted(allowed_clients or {})
        if keys is not None:
            self._auth = _RobotAuthenticator(self._ctx, self.admitted)
            self._auth.start()
            if allowed_clients is None:
                self._auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
            else:
                self._auth.configure_curve_callback(domain="*", credentials_provider=self.admitted)
            s.curve_server = True
            s.curve_secretkey, s.curve_publickey = keys.secret, keys.public
        s.bind(address)
        self.address = s.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = s
        self.session = uuid.uuid4().hex[:12]
        self.max_bytes = max_bytes
        self.lost_after_s = lost_after_s
        self.expect_dims = expect_dims
        self.expect_camera = expect_camera  # the camera the served models read, if they name one
        self.robots: dict[str, RobotInfo] = {}
        self.departed: dict[str, RobotInfo] = {}  # robots reported lost, by the registration they gave
        self.returned = 0  # times a lost robot spoke again and was taken back
        self.received = 0
        self.errors: Counter = Counter()
        self.unreachable = 0

    # ------------------------------------------------------------------ receiving
    def poll_ready(self, timeout_ms: int = 0) -> bool:
        """Whether a message is waiting (blocks up to ``timeout_ms``)."""
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    def poll(self, timeout_ms: int = 0, max_messages: int = 256) -> list[Event]:
        events: list[Event] = []
        while len(events) < max_messages and self._sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            self.received += 1
            ident = frames[0].bytes
            robot = ident.decode("utf-8", "replace")
            if len(frames) != 2:
                self._reject(ident, proto.ProtocolError("framing", f"expected one frame per message, got {len(frames) - 1}"))
                continue
            try:
                msg = proto.validate(proto.decode(frames[1].bytes, self.max_bytes), sender="robot")
                if msg["robot"] != robot:
                    raise proto.ProtocolError("identity", f"message names robot {msg['robot']!r} but the connection "
                                                          f"is {robot!r}", msg["type"])
                self._check_key(frames[1], robot, msg["type"])
            except proto.ProtocolError as e:
                self._reject(ident, e)
                continue
            kind = msg["type"]
            if kind == "hello":
                if self.expect_dims and (msg["state_dim"], msg["action_dim"]) != tuple(self.expect_dims):
                    sd, ad = self.expect_dims
                    self._reject(ident, proto.ProtocolError(
                        "incompatible", f"robot {robot!r} announced state_dim {msg['state_dim']} and action_dim "
                        f"{msg['action_dim']}, but the policy served here reads {sd} state values and writes "
                        f"{ad} action values; connect it to a loop whose actor matches its embodiment", kind))
                    continue
                if self.expect_camera and self.expect_camera not in msg["cameras"]:
                    self._reject(ident, proto.ProtocolError(
                        "incompatible", f"robot {robot!r} announced cameras {msg['cameras']}, but the models served "
                        f"here read camera {self.expect_camera!r}; send that camera or use models trained on yours",
                        kind))
                    continue
                self.departed.pop(robot, None)
                self.robots[robot] = RobotInfo(robot, msg["embodiment"], msg["cameras"], msg["task"],
                                               msg["state_dim"], msg["action_dim"], msg.get("state_names"),
                                               msg.get("action_names"))
                self._send(ident, {"type": "welcome", "robot": robot, "session": self.session})
                events.append(Event("hello", robot, msg))
                continue
            if robot not in self.robots and robot in self.departed:
                self.robots[robot] = self.departed.pop(robot)
                self.returned += 1
            info = self.robots.get(robot)
            if info is None:
                self._reject(ident, proto.ProtocolError("unregistered", f"robot {robot!r} sent {kind} before hello "
                                                                        "(the gateway may have restarted)", kind))
                continue
            info.last_seen = time.monotonic()
            if kind == "obs":
                bad = self._check_obs(info, msg)
                if bad:
                    self._reject(ident, proto.ProtocolError("bad-obs", bad, kind))
                    continue
            if kind == "episode_start":
                info.episode = msg["episode"]
            if kind != "heartbeat":
                events.append(Event(kind, robot, msg))
        now = time.monotonic()
        for robot, info in list(self.robots.items()):
            if now - info.last_seen > self.lost_after_s:
                self.departed[robot] = self.robots.pop(robot)
                if len(self.departed) > 1024:  # remember the newest only
                    del self.departed[next(iter(self.departed))]
                events.append(Event("lost", robot, {"episode": info.episode}))
        return events

    def _check_key(self, frame, robot: str, kind: str) -> None:
        """With robot keys given, a key admits only the robot id it was issued to: the ZAP handler
        names the key's robot as the connection's User-Id, and any other id is refused."""
        if not self.admitted.keys:
            return
        owner = frame.get("User-Id")
        if owner != robot:
            raise proto.ProtocolError("identity", f"this connection's CURVE key was issued to robot {owner!r}, not "
                                                  f"{robot!r}; connect with the key pair made for {robot!r} "
                                                  f"(`vlac robot keys --name {robot}`)", kind)

    @staticmethod
    def _check_obs(info: RobotInfo, msg: dict) -> str:
        missing = [c for c in info.cameras if c not in msg["images"]]
        if missing:
            return f"obs lacks camera(s) {missing} announced in hello ({info.cameras})"
        if msg["state"].shape != (info.state_dim,):
            return f"obs state has shape {msg['state'].shape}, hello announced ({info.state_dim},)"
        op = msg.get("operator_action")
        if op is not None and op.shape != (info.action_dim,):
            return f"obs operator_action has shape {op.shape}, hello announced actions of ({info.action_dim},)"
        return ""

    def _reject(self, ident: bytes, err: proto.ProtocolError) -> None:
        self.errors[err.code] += 1
        try:
            self._sock.send_multipart([ident, proto.error_reply(ident.decode("utf-8", "replace"), err)], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            self.unreachable += 1

    # ------------------------------------------------------------------ sending
    def _send(self, ident: bytes, msg: dict) -> bool:
        try:
            self._sock.send_multipart([ident, proto.encode(msg)], zmq.NOBLOCK)
            return True
        except (zmq.Again, zmq.ZMQError):  # the robot is gone or its queue is full
            self.unreachable += 1
            return False

    def send_action(self, robot: str, obs_id: int, action, t_obs: float = 0.0) -> bool:
        return self._send(robot.encode(), {"type": "action", "robot": robot, "obs_id": int(obs_id),
                                           "action": np.asarray(action, dtype=np.float32), "t_obs": float(t_obs),
                                           "t_sent": time.time()})

    def send_error(self, robot: str, code: str, message: str, about: str = "") -> bool:
        """Tell a robot that one of its messages failed after the gateway accepted it (e.g. the
        model rejected its observation); counted like the gateway's own rejections."""
        self.errors[code] += 1
        return self._send(robot.encode(), {"type": "error", "robot": robot, "code": code, "message": message,
                                           "about": about})

    def send_reset(self, robot: str, episode: int, reason: str) -> bool:
        return self._send(robot.encode(), {"type": "reset", "robot": robot, "episode": int(episode), "reason": reason})

    def send_takeover(self, robot: str, episode: int, steps: int) -> bool:
        """An operator drives ``robot`` for up to ``steps`` steps of ``episode``, then the policy again."""
        return self._send(robot.encode(), {"type": "takeover", "robot": robot, "episode": int(episode),
                                           "steps": int(steps)})

    def send_return(self, robot: str, episode: int, step: int) -> bool:
        """``robot`` starts its next episode from the state it reached at ``step`` of ``episode``."""
        return self._send(robot.encode(), {"type": "return_to", "robot": robot, "episode": int(episode),
                                           "step": int(step)})

    def close(self) -> None:
        self._sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.destroy(linger=0)  # not term: it waits for ever on any socket of the context left open


class _Admitted:
    """CURVE credentials: the robot public keys (Z85) admitted, each bound to its robot id; counts
    refused handshakes (unknown keys) and refused identities (a key used under another id)."""

    def __init__(self, keys: dict[bytes, str]):
        self.keys = {bytes(k): robot for k, robot in keys.items()}
        self.refused = 0

    def callback(self, domain, z85_key: bytes) -> bool:
        ok = bytes(z85_key) in self.keys
        self.refused += not ok
        return ok


class _RobotAuthenticator(ThreadAuthenticator):
    """ZeroMQ's authenticator thread, naming each admitted connection by its key's robot id (the
    ZAP User-Id that every message of that connection then carries)."""

    def __init__(self, ctx, admitted: _Admitted):
        super().__init__(ctx)
        self.admitted = admitted

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.admitted.keys.get(z85.encode(client_public_key), "")
