"""The robot side of the link: what a robot's driver imports (numpy, pyzmq, msgpack; no torch,
transformers or Ray).

    >>> client = RobotClient("tcp://10.0.0.5:5555", "arm-1", embodiment="piper", cameras=["main"],
    ...                      task="open the drawer", state_dim=4, action_dim=4, server_key=...)
    >>> client.start_episode(0)
    >>> oid = client.send_obs({"main": image}, state, episode=0, step=0)   # never blocks
    >>> action = client.wait_action(oid, timeout=0.1)                     # None: keep the last one / hold

The socket reconnects by itself with exponential back-off (ZeroMQ's reconnect interval doubling
up to ``reconnect_max_ms``); the client re-registers (``hello``) whenever the connection drops
or the gateway does not know it, e.g. after the gateway restarted. Sends never block: with
nobody connected, or the send queue full, an observation is dropped and counted (``dropped``),
because a stale one is worth nothing to a moving robot. Episode starts and ends are not: they
wait in order (``pending``) and go out as soon as the gateway has welcomed the robot and the
socket takes them, before any later observation (one that cannot go after them is dropped), so
the gateway never sees an episode's observations without its start or misses its end.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from vlac.transport import protocol as proto
from vlac.transport.link import CurveKeys, is_loopback


class RobotClient:
    def __init__(self, address: str, robot_id: str, embodiment: str, cameras: list[str], task: str,
                 state_dim: int, action_dim: int, server_key: bytes | None = None, keys: CurveKeys | None = None,
                 state_names: list[str] | None = None, action_names: list[str] | None = None, heartbeat_s: float = 1.0, hello_every_s: float = 1.0, reconnect_ms: int = 100,
                 reconnect_max_ms: int = 5000, queue: int = 8):
        if not robot_id:
            raise ValueError("robot_id must be a non-empty string")
        if server_key is None and not is_loopback(address):
            raise ValueError(f"connecting to {address} (not loopback) needs CURVE encryption: pass the gateway's "
                             "public key (--server-key FILE) and this robot's key pair (--keys FILE)")
        self.address, self.robot_id, self.task = address, robot_id, task
        self.hello = {"type": "hello", "robot": robot_id, "embodiment": embodiment, "cameras": list(cameras),
                      "task": task, "state_dim": int(state_dim), "action_dim": int(action_dim)}
        for name, names in (("state_names", state_names), ("action_names", action_names)):
            if names is not None:
                self.hello[name] = list(names)
        self._ctx = zmq.Context()
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, robot_id.encode())
        s.setsockopt(zmq.RECONNECT_IVL, reconnect_ms)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, reconnect_max_ms)
        s.setsockopt(zmq.SNDHWM, queue)
        s.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a gateway that is not connected
        s.setsockopt(zmq.LINGER, 0)
        if server_key is not None:
            keys = keys or CurveKeys.generate()
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_key, keys.public, keys.secret
        # told when the connection drops, so the robot registers again before anything else goes out
        self._monitor = s.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        s.connect(address)
        self._sock = s
        self.heartbeat_s, self.hello_every_s = heartbeat_s, hello_every_s
        self.session: str | None = None
        self.next_obs_id = 0
        self.sent = self.dropped = 0
        self.pending: deque = deque()  # episode starts / ends not yet taken by the socket, in order
        self.max_pending = 256
        self.lost_control = 0  # starts / ends dropped because ``max_pending`` were already waiting
        self.errors: deque = deque(maxlen=32)
        self.refused: str | None = None  # the gateway's reason when it turned this robot away at hello
        self.resets: deque = deque()
        self.takeovers: deque = deque()  # operator takeovers the gateway asked for: {episode, steps}
        self.returns: deque = deque()  # return points the gateway asked for: {episode, step}
        self._actions: dict[int, dict] = {}
        self.last_action_msg: dict | None = None  # the message of the action wait_action returned last
        self._last_hello = self._last_beat = 0.0
        self._send(self.hello)

    # ------------------------------------------------------------------ sending
    def _send(self, msg: dict) -> bool:
        try:
            self._sock.send(proto.encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += msg["type"] == "obs"
            return False
        now = time.monotonic()
        if msg["type"] == "hello":
            self._last_hello = now
        self._last_beat = now
        self.sent += 1
        return True

    def send_obs(self, images: dict, state, episode: int, step: int, t: float | None = None,
                 executed: int | None = None, sim: dict | None = None, operator_action=None,
                 driving: str = "policy") -> int:
        """Send one observation; returns its id (the action answering it carries the same id).
        ``executed``: the obs_id whose action the robot executed since its previous observation,
        or -1 if it held still (None: not reported; the gateway side then assumes lock-step).
        ``sim``: simulators only, {reward, success} of the transition into this observation.
        ``operator_action``: the action that ran since the previous observation was an operator's;
        ``driving`` "operator": the operator chooses the next one too (no policy action wanted)."""
        oid = self.next_obs_id
        self.next_obs_id += 1
        imgs = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in images.items()}
        msg = {"type": "obs", "robot": self.robot_id, "obs_id": oid, "episode": int(episode), "step": int(step),
               "t": float(time.time() if t is None else t), "images": imgs,
               "state": np.asarray(state, dtype=np.float32)}
        if executed is not None:
            msg["executed"] = int(executed)
        if sim is not None:
            msg["sim"] = {"reward": float(sim["reward"]), "success": bool(sim["success"])}
        if operator_action is not None:
            msg["operator_action"] = np.asarray(operator_action, dtype=np.float32)
        if driving != "policy":
            msg["driving"] = driving
        if self._flush():
            self._send(msg)
        else:
            self.dropped += 1  # an episode start or end must reach the gateway first
        self.poll()
        return oid

    def start_episode(self, episode: int, task: str | None = None, returned_to: tuple | None = None,
                      scene: str | None = None) -> None:
        """``returned_to``: the (episode, step) whose state this episode starts from, when the
        robot honoured the gateway's ``return_to``; ``scene``: an id of the start it was set up in
        (episodes of one task with one id began alike)."""
        msg = {"type": "episode_start", "robot": self.robot_id, "episode": int(episode), "task": task or self.task}
        if returned_to is not None:
            msg["returned_to"] = [int(x) for x in returned_to]
        if scene is not None:
            msg["scene"] = str(scene)
        self._send_in_order(msg)

    def end_episode(self, episode: int, reason: str, success: bool | None = None) -> None:
        msg = {"type": "episode_end", "robot": self.robot_id, "episode": int(episode), "reason": reason}
        if success is not None:
            msg["success"] = bool(success)  # simulators only: measurement, never a learning signal
        self._send_in_order(msg)

    def _send_in_order(self, msg: dict) -> None:
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.lost_control += 1
        self.pending.append(msg)
        self._flush()

    def _flush(self) -> bool:
        """Send the waiting episode starts / ends the socket takes; True when none is left. Only
        to a gateway that has welcomed this robot: one sent before would be refused unregistered."""
        while self.pending and self.session is not None:
            if not self._send(self.pending[0]):
                return False
            self.pending.popleft()
        return not self.pending

    # ------------------------------------------------------------------ receiving
    def poll(self, timeout_ms: int = 0) -> None:
        """Read everything the gateway sent; send a heartbeat or a hello when due, and the waiting
        episode starts / ends."""
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.session = None  # whoever answers next may not know this robot: register first
            elif event == zmq.EVENT_CONNECTED and self.session is None:
                self._last_hello = 0.0  # say hello now, not at the next interval
        now = time.monotonic()
        if self.session is None and now - self._last_hello >= self.hello_every_s:
            self._send(self.hello)
        elif now - self._last_beat >= self.heartbeat_s:
            self._send({"type": "heartbeat", "robot": self.robot_id, "t": time.time()})
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            try:
                msg = proto.validate(proto.decode(self._sock.recv(zmq.NOBLOCK)), sender="gateway")
            except proto.ProtocolError as e:
                self.errors.append(("local", e.code, str(e)))
                continue
            kind = msg["type"]
            if kind == "welcome":
                self.session = msg["session"]
            elif kind == "action":
                self._actions[msg["obs_id"]] = msg
            elif kind == "reset":
                self.resets.append(msg)
            elif kind == "takeover":
                self.takeovers.append(msg)
            elif kind == "return_to":
                self.returns.append(msg)
            elif kind == "error":
                self.errors.append((msg.get("about", ""), msg["code"], msg["message"]))
                if msg["code"] == "incompatible":
                    self.refused = msg["message"]
                elif msg["code"] == "unregistered" and self.refused is None:
                    self.session = None  # the gateway restarted or forgot us: register again
                    self._send(self.hello)
        self._flush()

    def wait_welcome(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.session is None and time.monotonic() < end:
            self.poll(50)
        return self.session is not None

    def wait_action(self, obs_id: int, timeout: float) -> np.ndarray | None:
        """The action answering observation ``obs_id`` (or a newer one), waiting at most ``timeout``
        seconds; None if none came (the caller holds still or repeats its last action). Actions
        answering older observations are discarded."""
        end = time.monotonic() + timeout
        while True:
            newest = max((k for k in self._actions if k >= obs_id), default=None)
            if newest is not None:
                msg = self._actions.pop(newest)
                self._actions = {k: v for k, v in self._actions.items() if k > newest}
                self.last_action_msg = msg
                return np.asarray(msg["action"], dtype=np.float32)
            left = end - time.monotonic()
            if left <= 0 or self.resets or self.takeovers:
                return None
            self.poll(max(1, int(min(left, 0.05) * 1000)))

    def close(self, flush_s: float = 1.0) -> None:
        """Close the link, first giving waiting episode starts / ends up to ``flush_s`` seconds to
        go out (an episode's end sent just before closing would otherwise be lost)."""
        end = time.monotonic() + flush_s
        while self.pending and time.monotonic() < end:
            self.poll(20)
        self._sock.close(linger=int(max(0.0, end - time.monotonic()) * 1000))  # what the socket holds may go out
        # destroy, not term: term waits for ever on any socket of the context left open
        self._ctx.destroy(linger=0)

    def __enter__(self) -> "RobotClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
