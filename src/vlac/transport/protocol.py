"""The robot link protocol, version 1: msgpack maps over ZeroMQ DEALER (robot) / ROUTER (gateway).

Depends only on numpy and msgpack, so a real robot's driver imports it without torch,
transformers or Ray. Every message is one frame: a msgpack map with ``v`` (protocol version),
``type`` and ``robot`` (the robot's id), plus the fields of its type below. Arrays (images,
states, actions) travel as msgpack extension 1: ``dtype`` string, shape and raw bytes.

Robot -> gateway
    hello          embodiment, cameras [names], task, state_dim, action_dim   (registration; repeat after a reconnect),
                   state_names, action_names (optional [names], one per value: how the RL dataset
                   labels the state and action columns; default state_0.., action_0..)
    obs            obs_id (int, increasing), episode (int), step (int), t (capture time, s since epoch),
                   images {camera: HxWx3 uint8}, state (S,) float,
                   executed (optional int: obs_id of the action executed since the previous
                   observation, -1 if the robot held still; absent means the action answering the
                   previous observation was executed, as in lock-step),
                   sim (optional, simulators only: {reward: the simulator's shaped reward of the
                   transition into this observation, success: its flag}; ground truth for the
                   labelled oracle reward arms, dropped by the loop in every other arm)
                   operator_action (optional (A,) float: the action that ran since the previous
                   observation was an operator's, a person at a teleoperation device or a
                   simulator's scripted stand-in, not the policy's),
                   driving (optional "policy" | "operator": who chooses the action for this
                   observation; "operator": the robot wants no policy action for it)
    episode_start  episode, task, returned_to (optional [episode, step]: the return point this episode
                   starts from, when the robot honoured a ``return_to``), scene (optional str: an id of the
                   start the episode was set up in, its objects' and goal's placement; episodes of one task
                   with one id began alike, as a simulator's seed or an operator's fixed layout makes them)
    episode_end    episode, reason ("done" | "limit" | "reset" | "abort"), success (optional; simulators
                   only, for measurement, never used for learning; the simulator robot reports
                   whether its flag was on at any step of the episode)
    heartbeat      t
Gateway -> robot
    welcome        session (str), protocol version accepted
    action         obs_id (the observation it answers), action (A,) float, t_obs, t_sent
    reset          episode (the one to end), reason, restore (optional: an opaque snapshot to return to)
    takeover       episode, steps: an operator drives the robot for up to ``steps`` steps (a simulated
                   robot's scripted expert stands in for the person), then the policy again
    return_to      episode, step: start the next episode it begins from the state reached at that step
                   of that earlier episode (return-and-explore; a simulated robot restores its snapshot, a
                   real robot's operator carries it out); a robot that cannot just starts afresh
    error          code, message, (the offending type if known)

Bounds (``validate``): ``v`` is the integer 1; ids, episodes and steps are integers in
0..2^63-1; times are finite; a task is 1..MAX_TASK_CHARS characters of prompt text; names are at
most MAX_NAME_CHARS; at most MAX_CAMERAS cameras and MAX_DIM state or action values; frames are
HxWx3 uint8 with sides MIN_IMAGE_SIDE..MAX_IMAGE_SIDE. What a model would reject never gets past
the gateway, and nothing a robot sends can make one action cost seconds.

A robot never blocks on the gateway: it sends observations as they are captured and executes the
newest action that answers one of them. The lag between an observation and its action is in the
action itself (``t_obs``, ``t_sent``), and the RL loop records each step's action with the
observation it answers; ``executed`` tells it which action really ran, so an action that came
too late is never trained on (see README, "Action timing").
"""

from __future__ import annotations

import numpy as np

try:
    import msgpack
except ImportError as e:  # pragma: no cover - import guard for robot drivers
    raise ImportError("the robot link needs msgpack: pip install 'vlac[robot]'") from e

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Bounds on what reaches a model or the loop's memory: a task is prompt text (a 22 KB task once
# made every action take seconds), names are labels, a frame smaller than the models' minimum
# side cannot be scored.
MAX_TASK_CHARS = 300
MAX_NAME_CHARS = 64
MAX_CAMERAS = 8
MAX_DIM = 64
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 4096
MAX_ID = 2**63 - 1
_ND = 1

ROBOT_TYPES = {
    "hello": {"embodiment": str, "cameras": list, "task": str, "state_dim": int, "action_dim": int},
    "obs": {"obs_id": int, "episode": int, "step": int, "t": float, "images": dict, "state": np.ndarray},
    "episode_start": {"episode": int, "task": str},
    "episode_end": {"episode": int, "reason": str},
    "heartbeat": {"t": float},
}
GATEWAY_TYPES = {
    "welcome": {"session": str},
    "action": {"obs_id": int, "action": np.ndarray},
    "reset": {"episode": int, "reason": str},
    "takeover": {"episode": int, "steps": int},
    "return_to": {"episode": int, "step": int},
    "error": {"code": str, "message": str},
}
DRIVERS = ("policy", "operator")
END_REASONS = ("done", "limit", "reset", "abort")


class ProtocolError(ValueError):
    """A message that is not valid protocol; ``code`` is sent back in the error reply."""

    def __init__(self, code: str, message: str, msg_type: str | None = None):
        super().__init__(message)
        self.code, self.msg_type = code, msg_type


def _default(obj):
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        header = msgpack.packb([a.dtype.str, list(a.shape)])
        return msgpack.ExtType(_ND, len(header).to_bytes(4, "little") + header + a.tobytes())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} in a message")


def _ext_hook(code, data):
    if code != _ND:
        raise ProtocolError("bad-extension", f"unknown msgpack extension {code}")
    n = int.from_bytes(data[:4], "little")
    dtype, shape = msgpack.unpackb(data[4:4 + n])
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise ProtocolError("bad-array", f"array dtype {dtype} is not numeric")
    body = data[4 + n:]
    if len(body) != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ProtocolError("bad-array", f"array of shape {shape} and dtype {dtype} has {len(body)} bytes")
    return np.frombuffer(body, dtype=dt).reshape(shape)


def encode(msg: dict) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, **msg}, default=_default, use_bin_type=True)


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Bytes -> message map, without checking its fields (see ``validate``)."""
    if len(data) > max_bytes:
        raise ProtocolError("too-large", f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        msg = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises many kinds on garbage
        raise ProtocolError("undecodable", f"message is not msgpack ({type(e).__name__}: {e})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("not-a-map", f"message is a {type(msg).__name__}, not a map")
    return msg


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _check_text(kind: str, name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        got = f"{len(value)} characters" if isinstance(value, str) else f"{value!r:.80}"
        raise ProtocolError("bad-text", f"{kind} field {name!r} must be non-empty text of at most {limit} "
                                        f"characters, got {got}", kind)


def validate(msg: dict, sender: str = "robot") -> dict:
    """Check version, type, field types and bounds of a decoded message from ``sender`` ("robot"
    or "gateway"); raises ProtocolError naming the problem."""
    types = ROBOT_TYPES if sender == "robot" else GATEWAY_TYPES
    if not _is_int(msg.get("v")) or msg["v"] != PROTOCOL_VERSION:  # 1.0 and True are not 1
        raise ProtocolError("version", f"protocol version {msg.get('v')!r} is not supported (this side speaks "
                                       f"{PROTOCOL_VERSION}); update the robot client or the gateway")
    kind = msg.get("type")
    if kind not in types:
        raise ProtocolError("unknown-type", f"message type {kind!r} is not one a {sender} sends; "
                                            f"valid: {', '.join(types)}", kind if isinstance(kind, str) else None)
    if not isinstance(msg.get("robot"), str) or not msg["robot"] or len(msg["robot"]) > 255:
        raise ProtocolError("no-robot", "message has no robot id (field 'robot', a non-empty string of at most "
                                        "255 characters)", kind)
    for name, typ in types[kind].items():
        value = msg.get(name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float else \
            isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if not ok:
            raise ProtocolError("bad-field", f"{kind} message field {name!r} must be {typ.__name__}, "
                                             f"got {type(value).__name__}", kind)
        if typ is int and not 0 <= value <= MAX_ID:
            raise ProtocolError("bad-field", f"{kind} message field {name!r} must be in 0..2^63-1, got {value}", kind)
        if typ is float and not np.isfinite(value):
            raise ProtocolError("bad-field", f"{kind} message field {name!r} must be a finite number, got {value}",
                                kind)
    if "task" in types[kind]:
        _check_text(kind, "task", msg["task"], MAX_TASK_CHARS)
    if kind == "hello":
        _check_hello(msg)
    if kind == "obs":
        _check_obs(msg)
    back = msg.get("returned_to") if kind == "episode_start" else None
    if back is not None and not (isinstance(back, list) and len(back) == 2 and all(_is_int(x) and 0 <= x <= MAX_ID
                                                                                   for x in back)):
        raise ProtocolError("bad-field", f"episode_start field 'returned_to' must be [episode, step], got {back!r:.80}",
                            kind)
    if kind == "episode_start" and "scene" in msg:
        _check_text(kind, "scene", msg["scene"], MAX_NAME_CHARS)
    if kind == "episode_end" and msg["reason"] not in END_REASONS:
        raise ProtocolError("bad-field", f"episode_end reason {msg['reason']!r} is not one of {END_REASONS}", kind)
    return msg


def _check_hello(msg: dict) -> None:
    cams = msg["cameras"]
    if not cams or len(cams) > MAX_CAMERAS or not all(isinstance(c, str) and 0 < len(c) <= MAX_NAME_CHARS
                                                      for c in cams):
        raise ProtocolError("bad-field", f"hello field 'cameras' must be a list of 1 to {MAX_CAMERAS} camera names "
                                         f"(at most {MAX_NAME_CHARS} characters each), got {cams!r:.200}", "hello")
    _check_text("hello", "embodiment", msg["embodiment"], MAX_NAME_CHARS)
    for name in ("state_dim", "action_dim"):
        if not 1 <= msg[name] <= MAX_DIM:
            raise ProtocolError("bad-field", f"hello field {name!r} must be in 1..{MAX_DIM}, got {msg[name]}", "hello")
    for name, dim in (("state_names", "state_dim"), ("action_names", "action_dim")):
        names = msg.get(name)
        if names is not None and not (isinstance(names, list) and len(names) == msg[dim] and all(
                isinstance(n, str) and 0 < len(n) <= MAX_NAME_CHARS for n in names)):
            raise ProtocolError("bad-field", f"hello field {name!r} must list {msg[dim]} names ({dim}) of at most "
                                             f"{MAX_NAME_CHARS} characters each, got {names!r:.200}", "hello")


def _check_obs(msg: dict) -> None:
    if not msg["images"] or len(msg["images"]) > MAX_CAMERAS:
        raise ProtocolError("bad-image", f"obs must carry 1 to {MAX_CAMERAS} camera frames, got "
                                         f"{len(msg['images'])}", "obs")
    for cam, img in msg["images"].items():
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", None)
            raise ProtocolError("bad-image", f"obs image {cam!r} must be an HxWx3 uint8 array, got "
                                             f"{type(img).__name__} {shape}", "obs")
        if not MIN_IMAGE_SIDE <= min(img.shape[:2]) <= max(img.shape[:2]) <= MAX_IMAGE_SIDE:
            raise ProtocolError("bad-image", f"obs image {cam!r} is {img.shape[1]}x{img.shape[0]} px; each side must "
                                             f"be {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} px", "obs")
    state = msg["state"]
    if state.ndim != 1 or state.size > MAX_DIM or not np.isfinite(state).all():
        raise ProtocolError("bad-state", f"obs state must be a finite 1-d array of at most {MAX_DIM} values", "obs")
    sim = msg.get("sim", {"reward": 0.0, "success": False})
    if not (isinstance(sim, dict) and isinstance(sim.get("success"), bool) and _is_finite(sim.get("reward"))):
        raise ProtocolError("bad-field", "obs field 'sim' must be {reward: finite number, success: bool}", "obs")
    op = msg.get("operator_action")
    if op is not None and not (isinstance(op, np.ndarray) and op.ndim == 1 and 0 < op.size <= MAX_DIM
                               and op.dtype.kind in "iuf" and np.isfinite(op).all()):
        raise ProtocolError("bad-field", f"obs field 'operator_action' must be a finite 1-d array of at most "
                                         f"{MAX_DIM} values", "obs")
    if msg.get("driving", "policy") not in DRIVERS:
        raise ProtocolError("bad-field", f"obs field 'driving' must be one of {DRIVERS}, got {msg.get('driving')!r:.50}",
                            "obs")
    ex = msg.get("executed", -1)
    if not _is_int(ex) or not -1 <= ex <= MAX_ID:
        raise ProtocolError("bad-field", f"obs field 'executed' must be an obs_id or -1 (held still), "
                                         f"got {ex!r}", "obs")


def error_reply(robot: str, err: ProtocolError) -> bytes:
    return encode({"type": "error", "robot": robot, "code": err.code, "message": str(err),
                   "about": err.msg_type or ""})
