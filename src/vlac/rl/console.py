"""``vlac rl --console HOST:PORT``: the operator console, a web page served from the loop's process.

For every robot it shows the live camera frames, the open episode's value curve and done
probability (the critic's), recent episodes' critic returns and return points, and the learner's
state. An operator can pause and resume a robot, take it over and drive it with the keyboard
(``KEYS``), hand it back, mark its current state as a return point, send it to one of its return
points, and end its episode labelled success or failure (stored with the episode).

Two halves, so the robots never wait for a browser:

- ``ConsoleServer`` (FastAPI served by uvicorn on a thread of its own) answers the page. It reads
  only the snapshot the loop last published and hands each command to the loop through a queue,
  waiting for the loop's verdict to answer the request.
- ``OperatorDesk`` lives on the loop's thread: ``tick`` publishes a snapshot a few times a second
  and carries out the queued commands on the fleet, the gateway and the return bank, refusing
  (HTTP 409, nothing changed) a robot that is gone, keys from an operator who does not hold the
  robot, and a return point of another robot, task or embodiment.

Loopback by default; a console on any other address needs a token (``--console-token`` or
``VLAC_CONSOLE_TOKEN``), which every request carries (``X-Console-Token`` header or ``?token=``).
"""

import io
import queue
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlac.critic.metrics import value_curve

# key -> (axis, sign): one press moves the end effector one step (``--console-step`` mm) along
# x (a/d), y (s/w) or z (f/r); g toggles the gripper; h holds still for a step.
KEYS = {"a": (0, -1), "d": (0, 1), "s": (1, -1), "w": (1, 1), "f": (2, -1), "r": (2, 1), "g": (3, 0), "h": (None, 0)}
COMMANDS = ("pause", "resume", "take", "key", "hand-back", "mark", "send", "end")
PUBLISH_EVERY_S = 0.2  # snapshots per second the loop publishes: 5


class Refused(Exception):
    """An operator command that cannot be carried out; nothing was changed."""


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); one line naming the flag otherwise."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--console {bind!r} must be HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free one)")
    return host.strip("[]"), int(port)


def console_is_loopback(bind: str) -> bool:
    from vlac.transport.link import is_loopback

    host, port = parse_bind(bind)
    return is_loopback(f"tcp://{host}:{port}")


@dataclass
class Command:
    kind: str
    robot: str
    operator: str
    args: dict = field(default_factory=dict)
    reply: Future = field(default_factory=Future)


class ConsoleServer:
    """The console's web server: a FastAPI app on a uvicorn thread."""

    def __init__(self, bind: str, token: str = "", reply_timeout: float = 10.0):
        self.host, self.port = parse_bind(bind)
        if not token and not console_is_loopback(bind):
            raise ValueError(f"--console {bind} is not loopback: pass --console-token TOKEN (or set "
                             "VLAC_CONSOLE_TOKEN); every request must carry it")
        self.token = token
        self.reply_timeout = reply_timeout
        self.commands: queue.Queue[Command] = queue.Queue()
        self._snapshot: dict = {"robots": {}, "learner": {}, "keys": KEYS, "t": 0.0}
        self._frames: dict = {}  # robot -> (obs_id, {camera: HxWx3 uint8})
        self._jpeg: dict = {}  # (robot, camera) -> (obs_id, bytes)
        self._lock = threading.Lock()
        self._server = self._thread = None
        self.url = ""

    # ------------------------------------------------------------------ the loop's side
    def publish(self, snapshot: dict, frames: dict) -> None:
        with self._lock:
            self._snapshot, self._frames = snapshot, frames

    def pending(self) -> list[Command]:
        out = []
        while True:
            try:
                out.append(self.commands.get_nowait())
            except queue.Empty:
                return out

    # ------------------------------------------------------------------ the server's side
    def start(self) -> str:
        import uvicorn

        config = uvicorn.Config(self._app(), host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="vlac-console", daemon=True)
        self._thread.start()
        end = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise RuntimeError(f"the console could not listen on {self.host}:{self.port} (is the port in use?)")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        return self.url

    def _serve(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn's way of saying it could not listen (it logged why): start() reports it
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        for cmd in self.pending():  # the loop is gone: say so instead of leaving a request hanging
            if cmd.reply.set_running_or_notify_cancel():
                cmd.reply.set_exception(Refused("the run has ended"))

    def _authorised(self, request) -> bool:
        if not self.token:
            return True
        given = request.headers.get("x-console-token") or request.query_params.get("token") or ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _app(self):
        from fastapi import Body, FastAPI, HTTPException, Request
        from fastapi.responses import HTMLResponse, JSONResponse, Response

        app = FastAPI(title="vlac operator console", docs_url=None, redoc_url=None, openapi_url=None)
        page = (Path(__file__).with_name("console.html")).read_text()

        @app.middleware("http")
        async def token_check(request: Request, call_next):
            if not self._authorised(request):
                return JSONResponse({"error": "this console needs its token: open the URL `vlac rl` printed (it "
                                              "ends in ?token=...) or send the X-Console-Token header"},
                                    status_code=401)
            return await call_next(request)

        @app.get("/", response_class=HTMLResponse)
        def index():
            return page

        @app.get("/api/state")
        def state():
            with self._lock:
                return self._snapshot

        @app.get("/api/robots/{robot}/frame.jpg")
        def frame(robot: str, camera: str = ""):
            with self._lock:
                obs_id, views = self._frames.get(robot, (None, {}))
            if not views:
                raise HTTPException(404, f"robot {robot!r} has no frame (not connected, or no observation yet)")
            cam = camera or next(iter(views))
            if cam not in views:
                raise HTTPException(404, f"robot {robot!r} has no camera {cam!r} (it has {', '.join(views)})")
            cached = self._jpeg.get((robot, cam))
            if cached is None or cached[0] != obs_id:
                cached = (obs_id, _jpeg(views[cam]))
                self._jpeg[(robot, cam)] = cached
            return Response(cached[1], media_type="image/jpeg", headers={"Cache-Control": "no-store",
                                                                         "X-Obs-Id": str(obs_id)})

        @app.get("/api/robots/{robot}/points/{episode}/{step}.jpg")
        def point_frame(robot: str, episode: int, step: int):
            """The camera frame of a return point's state."""
            return frame(f"{robot}/{episode}/{step}")

        @app.post("/api/robots/{robot}/{kind}")
        def command(robot: str, kind: str, request: Request, body: dict = Body(default_factory=dict)):
            if kind not in COMMANDS:
                raise HTTPException(404, f"no console command {kind!r}; one of {', '.join(COMMANDS)}")
            operator = request.headers.get("x-operator", "").strip()
            if not operator or len(operator) > 64:
                raise HTTPException(400, "send X-Operator: a name for this operator (1-64 characters; the page "
                                         "makes one per browser tab)")
            cmd = Command(kind, robot, operator, dict(body))
            self.commands.put(cmd)
            try:
                message = cmd.reply.result(timeout=self.reply_timeout)
            except FutureTimeout:
                cmd.reply.cancel()
                raise HTTPException(503, f"the loop did not take the command within {self.reply_timeout:.0f} s; "
                                         "nothing was changed, try again") from None
            except Refused as e:
                return JSONResponse({"error": str(e)}, status_code=409)
            return {"ok": True, "message": message}

        return app


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class OperatorDesk:
    """The console's commands carried out on the loop's thread, and the snapshots it publishes."""

    def __init__(self, server: ConsoleServer, fleet, gateway, bank, step_mm: float = 5.0):
        self.server, self.fleet, self.gateway, self.bank = server, fleet, gateway, bank
        self.step_mm = step_mm
        self.holders: dict[str, str] = {}  # robot -> the operator driving it
        self.grip: dict[str, float] = {}  # robot -> the gripper opening its operator's keys keep
        self.recent: deque = deque(maxlen=200)  # finished episodes' summaries
        self.counters = {"console_commands": 0, "console_refused": 0, "console_takeovers": 0}
        self._published = 0.0

    def finished(self, summary: dict) -> None:
        self.recent.append(summary)

    def tick(self, now: float, learner: dict) -> None:
        """Carry out queued commands; publish a snapshot every ``PUBLISH_EVERY_S``."""
        for cmd in self.server.pending():
            if not cmd.reply.set_running_or_notify_cancel():
                continue  # its request timed out: not carried out
            self.counters["console_commands"] += 1
            try:
                cmd.reply.set_result(self.apply(cmd, now))
            except Refused as e:
                self.counters["console_refused"] += 1
                cmd.reply.set_exception(e)
        if now - self._published >= PUBLISH_EVERY_S:
            self._published = now
            self.server.publish(*self.snapshot(learner))

    # ------------------------------------------------------------------ commands
    def apply(self, cmd: Command, now: float) -> str:
        robot, fleet = cmd.robot, self.fleet
        info = self.gateway.robots.get(robot)
        if info is None:
            raise Refused(f"robot {robot!r} is not connected (gone, or never registered); nothing changed")
        holder = self.holders.get(robot)
        if holder is not None and holder != cmd.operator and cmd.kind in ("take", "key", "hand-back", "pause", "resume"):
            raise Refused(f"robot {robot} is driven by operator {holder}; ask them to hand it back")
        if cmd.kind == "pause":
            fleet.pause(robot)
            return f"{robot} paused: its observations wait unanswered"
        if cmd.kind == "resume":
            fleet.resume(robot, now)
            return f"{robot} resumed"
        if cmd.kind == "take":
            if holder is None:
                fleet.take_manual(robot)
                self.holders[robot] = cmd.operator
                self.counters["console_takeovers"] += 1
                self.grip[robot] = self._last_grip(robot)
            return f"{robot} is yours: keys {' '.join(KEYS)} drive it; hand it back when done"
        if cmd.kind == "key":
            if holder is None:
                raise Refused(f"take robot {robot} over before sending keys")
            key = str(cmd.args.get("key", ""))
            if key not in KEYS:
                raise Refused(f"key {key!r} does nothing; keys: {', '.join(KEYS)}")
            action = self.key_action(robot, key)
            fleet.drive(robot, action)
            return f"{robot}: {key} -> {action}"
        if cmd.kind == "hand-back":
            if holder is None:
                raise Refused(f"robot {robot} is not taken over")
            fleet.hand_back(robot, now)
            del self.holders[robot]
            return f"{robot} is the policy's again"
        if cmd.kind == "mark":
            return self._mark(robot, info)
        if cmd.kind == "send":
            return self._send(robot, info, cmd.args)
        if cmd.kind == "end":
            label = {"success": True, "failure": False, "none": None}.get(str(cmd.args.get("label", "none")), "?")
            if label == "?":
                raise Refused(f"label {cmd.args.get('label')!r} must be success, failure or none")
            episode = fleet.end_by_operator(robot, label)
            if episode is None:
                raise Refused(f"robot {robot} has no open episode to end")
            return f"{robot}: episode {episode} ended" + ("" if label is None else f", labelled {cmd.args['label']}")
        raise Refused(f"no console command {cmd.kind!r}")

    def key_action(self, robot: str, key: str) -> list[float]:
        axis, sign = KEYS[key]
        action = [0.0, 0.0, 0.0, self.grip.get(robot, 1.0)]
        if axis == 3:
            self.grip[robot] = action[3] = 1.0 - self.grip.get(robot, 1.0)
        elif axis is not None:
            action[axis] = sign * self.step_mm
        return action

    def _last_grip(self, robot: str) -> float:
        r = self.fleet.robots.get(robot)
        ran = [s.action for s in (r.rec.steps if r is not None and r.rec is not None else []) if s.action is not None]
        return float(ran[-1][3] >= 0.5) if ran else 1.0

    def _open_step(self, robot: str):
        r = self.fleet.robots.get(robot)
        if r is None or r.rec is None or not r.rec.steps:
            raise Refused(f"robot {robot} has no open episode with an observation yet")
        return r.rec, r.rec.steps[-1]

    def _mark(self, robot: str, info) -> str:
        rec, step = self._open_step(robot)
        if step.robot_step is None:
            raise Refused(f"robot {robot} does not number its steps; it cannot be sent back to one")
        self.bank.mark(robot, rec.task, rec.episode, step.robot_step, rec.value, info.embodiment, step.image)
        return f"{robot}: return point at episode {rec.episode}, step {step.robot_step} (value {rec.value:.2f})"

    def _send(self, robot: str, info, args: dict) -> str:
        try:
            owner, episode, step = str(args.get("robot", robot)), int(args["episode"]), int(args["step"])
        except (KeyError, TypeError, ValueError):
            raise Refused("send needs the return point's episode and step (integers)") from None
        point = self.bank.find(owner, episode, step)
        if point is None:
            raise Refused(f"no return point of {owner} at episode {episode}, step {step} (retired, too old for the "
                          "robot to hold, or never marked)")
        if owner != robot:
            raise Refused(f"the return point is {owner}'s: its state lives on that robot, not on {robot}")
        if point.task != info.task or point.embodiment not in ("", info.embodiment):
            raise Refused(f"the return point is from task {point.task!r}; {robot} now runs {info.task!r} "
                          f"on a {info.embodiment} (the point: {point.embodiment or 'the same'})")
        self.gateway.send_return(robot, episode, step)
        ended = self.fleet.end_by_operator(robot, None)
        return (f"{robot} returns to episode {episode}, step {step}"
                + (f" (episode {ended} ended)" if ended is not None else " with its next episode"))

    # ------------------------------------------------------------------ what the page shows
    def snapshot(self, learner: dict) -> tuple[dict, dict]:
        robots, frames = {}, {}
        for robot, info in self.gateway.robots.items():
            r = self.fleet.robots.get(robot)
            rec = r.rec if r is not None else None
            steps = rec.steps if rec is not None else []
            scored = [s for s in steps[:-1] if s.reward is not None and np.isfinite(s.reward)]
            driving = ("operator " + self.holders[robot] if robot in self.holders
                       else "paused" if robot in self.fleet.paused else "policy")
            mine = self.bank.points.get(robot, []) if self.bank is not None else []
            robots[robot] = {
                "task": info.task, "embodiment": info.embodiment, "cameras": list(info.cameras), "driving": driving,
                "episode": rec.episode if rec is not None else None, "steps": len(steps),
                "obs_id": steps[-1].obs_id if steps else None,
                "value": value_curve([s.reward for s in scored]).round(4).tolist(),
                "p_done": [round(float(s.p_done), 4) for s in scored if s.p_done is not None],
                "operator_steps": sum(s.operator_action is not None for s in steps),
                "recent": [{k: e.get(k) for k in ("episode", "return", "steps", "reason", "label", "operator_steps")}
                           for e in list(self.recent) if e["robot"] == robot][-8:],
                "points": [{"episode": p.episode, "step": p.step, "value": round(p.value, 3), "tries": p.tries,
                            "dones": p.dones, "source": p.source} for p in mine],
            }
            if steps:
                frames[robot] = (steps[-1].obs_id, steps[-1].views)
            for p in mine:  # each return point's frame, under its own key
                if p.frame is not None:
                    frames[f"{robot}/{p.episode}/{p.step}"] = (f"point-{p.episode}-{p.step}", {"main": p.frame})
        return {"robots": robots, "learner": learner, "keys": {k: list(v) for k, v in KEYS.items()},
                "step_mm": self.step_mm, "t": time.time()}, frames
