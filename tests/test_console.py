"""The operator console: its commands over real HTTP against a real gateway and robot link, and the
whole page in a real browser (Debian's chromium, headless) driving a `vlac rl` run."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest


def _call(url, method="GET", body=None, operator="", token=""):
    headers = {"Content-Type": "application/json"}
    if operator:
        headers["X-Operator"] = operator
    if token:
        headers["X-Console-Token"] = token
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _Desk:
    """A console, a gateway and the fleet, with a thread standing in for the loop's iterations."""

    def __init__(self, token=""):
        from vlac.rl.console import ConsoleServer, OperatorDesk
        from vlac.rl.fleet import Fleet, FleetRules
        from vlac.rl.returns import ReturnBank, ReturnRules
        from vlac.transport.gateway import Gateway

        self.gateway = Gateway("tcp://127.0.0.1:0")
        self.fleet = Fleet(FleetRules(), self.gateway.send_reset)
        self.bank = ReturnBank(ReturnRules())
        self.server = ConsoleServer("127.0.0.1:0", token=token)
        self.url = self.server.start()
        self.desk = OperatorDesk(self.server, self.fleet, self.gateway, self.bank, step_mm=5.0)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            with self.lock:
                now = time.monotonic()
                for ev in self.gateway.poll(timeout_ms=5):
                    if ev.kind == "episode_start":
                        self.fleet.episode_start(ev.robot, ev.msg["task"], ev.msg["episode"])
                    elif ev.kind == "obs":
                        self.fleet.observation(ev.robot, ev.msg, now, self.gateway.robots[ev.robot].task)
                    elif ev.kind == "episode_end":
                        self.fleet.episode_end(ev.robot, ev.msg["episode"], ev.msg["reason"], ev.msg.get("success"))
                for robot, oid, action, t_obs in self.fleet.operator_answers():
                    self.gateway.send_action(robot, oid, action, t_obs=t_obs)
                self.desk.tick(now, {"update": 0})
            time.sleep(0.005)

    def post(self, robot, kind, body=None, operator="ann"):
        code, data = _call(f"{self.url}api/robots/{robot}/{kind}", "POST", body or {}, operator)
        return code, json.loads(data)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.stop()
        self.gateway.close()


def _obs(robot, episode, step, executed=None):
    rng = np.random.default_rng(step)
    return robot.send_obs({"main": rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)},
                          np.array([0.0, 600.0, 200.0, 1.0], np.float32), episode=episode, step=step, executed=executed)


def _until(check, seconds=20.0):
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_console_commands_drive_a_robot_over_http_and_refuse_what_they_cannot_do():
    """Take over, keys, hand back, mark, send, end with a label, pause: carried out on a robot
    linked over ZeroMQ; a robot that is gone, keys from another operator, a point of another robot
    or task, and an unknown key are refused with one line and change nothing."""
    from PIL import Image

    from vlac.transport.client import RobotClient

    d = _Desk()
    robot = RobotClient(d.gateway.address, "arm-1", "sim-arm", ["main"], "reach the goal", 4, 4)
    try:
        assert robot.wait_welcome(30)
        robot.start_episode(0)
        oid = _obs(robot, 0, 0)
        _until(lambda: d.fleet.waiting)  # queued for the policy
        _until(lambda: json.loads(_call(d.url + "api/state")[1])["robots"].get("arm-1", {}).get("obs_id") == oid)
        code, jpeg = _call(f"{d.url}api/robots/arm-1/frame.jpg")
        assert code == 200 and Image.open(io.BytesIO(jpeg)).size == (80, 64)  # the frame as the loop keeps it

        assert d.post("arm-1", "take")[0] == 200
        assert d.post("arm-1", "take")[0] == 200  # taking it again is harmless
        assert not d.fleet.waiting  # the policy no longer serves it
        code, err = d.post("arm-1", "key", {"key": "d"}, operator="bob")
        assert code == 409 and "driven by operator ann" in err["error"]
        assert d.post("arm-1", "key", {"key": "q"})[0] == 409
        for key in ("d", "w"):
            assert d.post("arm-1", "key", {"key": key})[0] == 200
        first = robot.wait_action(oid, 10)
        assert first.tolist() == [5.0, 0.0, 0.0, 1.0]  # the operator's d: +x one step, gripper open
        oid2 = _obs(robot, 0, 1, executed=oid)
        assert robot.wait_action(oid2, 10).tolist() == [0.0, 5.0, 0.0, 1.0]
        oid3 = _obs(robot, 0, 2, executed=oid2)
        _until(lambda: d.fleet.robots["arm-1"].rec.steps[-1].obs_id == oid3)  # the loop has read it
        code, msg = d.post("arm-1", "mark")
        assert code == 200 and "step 2" in msg["message"]
        assert d.post("arm-1", "hand-back", operator="bob")[0] == 409
        assert d.post("arm-1", "hand-back")[0] == 200
        _until(lambda: any(w.robot == "arm-1" and w.step.obs_id == oid3 for w in d.fleet.waiting))  # policy's again

        assert d.post("gone-robot", "pause")[1]["error"].startswith("robot 'gone-robot' is not connected")
        with d.lock:
            d.bank.mark("arm-2", "reach the goal", 0, 1, 0.3)
            d.bank.mark("arm-1", "open the drawer", 0, 1, 0.3)
        assert "arm-2's" in d.post("arm-1", "send", {"robot": "arm-2", "episode": 0, "step": 1})[1]["error"]
        assert "from task 'open the drawer'" in d.post("arm-1", "send", {"episode": 0, "step": 1})[1]["error"]
        assert "no return point" in d.post("arm-1", "send", {"episode": 5, "step": 1})[1]["error"]

        code, msg = d.post("arm-1", "end", {"label": "success"})
        assert code == 200 and "labelled success" in msg["message"]
        robot.poll(2000)
        assert [r["reason"] for r in robot.resets] == ["reset"]
        with d.lock:
            rec = d.fleet.finishing[0]
            assert rec.label is True and rec.reason == "operator"
            assert [s.operator_action for s in rec.steps[:2]] == [[5.0, 0.0, 0.0, 1.0], [0.0, 5.0, 0.0, 1.0]]
            assert all(s.sample is None for s in rec.steps[:2])  # never PPO samples
            assert d.fleet.counters["operator_steps"] == 2

        robot.start_episode(1)  # the state marked in episode 0 is sent for
        oid = _obs(robot, 1, 0)
        code, msg = d.post("arm-1", "send", {"episode": 0, "step": 2})
        assert code == 200 and "returns to episode 0, step 2" in msg["message"]
        robot.poll(2000)
        assert [(m["episode"], m["step"]) for m in robot.returns] == [(0, 2)]
        assert d.post("arm-1", "pause")[0] == 200 and "arm-1" in d.fleet.paused

        def shown():  # the page's view: a snapshot at most PUBLISH_EVERY_S old
            return json.loads(_call(d.url + "api/state")[1])["robots"]["arm-1"]

        _until(lambda: shown()["driving"] == "paused")
        assert [p["source"] for p in shown()["points"]] == ["operator", "operator"]
        code, jpeg = _call(f"{d.url}api/robots/arm-1/points/0/2.jpg")  # the marked state's frame
        assert code == 200 and Image.open(io.BytesIO(jpeg)).size == (80, 64)
        assert _call(f"{d.url}api/robots/arm-1/points/0/7.jpg")[0] == 404
    finally:
        robot.close()
        d.close()


def test_a_console_off_loopback_needs_a_token_and_every_request_carries_it(tmp_path):
    from vlac.rl.config import RLConfig
    from vlac.rl.console import ConsoleServer

    with pytest.raises(ValueError, match="--console-token"):
        RLConfig(out=str(tmp_path), console="0.0.0.0:8080")
    with pytest.raises(ValueError, match="HOST:PORT"):
        RLConfig(out=str(tmp_path), console="8080")
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with pytest.raises(RuntimeError, match="could not listen on 127.0.0.1:.*in use"):
        ConsoleServer(f"127.0.0.1:{taken.getsockname()[1]}").start()
    taken.close()
    server = ConsoleServer("127.0.0.1:0", token="s3cret")
    url = server.start()
    try:
        code, body = _call(url + "api/state")
        assert code == 401 and "token" in json.loads(body)["error"]
        assert _call(url + "api/state", token="wrong")[0] == 401
        assert _call(url + "api/state", token="s3cret")[0] == 200
        assert _call(url + "?token=s3cret")[0] == 200
    finally:
        server.stop()


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("VLAC_REQUIRE_BROWSER"):
            pytest.fail("VLAC_REQUIRE_BROWSER is set but Debian's chromium / chromium-driver are not installed "
                        "(apt-get install chromium chromium-driver)")
        pytest.skip("the console's browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1300,900"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.mark.slow(90)
def test_an_operator_drives_a_robot_from_the_console_in_a_real_browser(tmp_path):
    """Headless Chromium opens the console of a `vlac rl` run, sees the robot's frame update,
    takes the robot over, sends keys, hands back and ends the episode labelled success; the robot
    executed those actions, and the stored episode has them flagged as the operator's and in the
    learner's replay buffer."""
    from selenium.webdriver.common.by import By

    from vlac.data.dataset import LeRobotDataset

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vlac.scripts.cli", "rl", "--out", str(out), "--tasks", "reach-v3", "--robots", "1",
           "--episodes", "1", "--episodes-per-update", "1", "--max-steps", "400", "--eval-episodes", "0",
           "--done-threshold", "1.5", "--learner.minibatch", "8", "--console", "127.0.0.1:0"]
    loop = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    driver = None
    try:
        end = time.monotonic() + 180
        while not (out / "console.txt").exists():
            assert time.monotonic() < end and loop.poll() is None, "the console did not start"
            time.sleep(0.2)
        url = (out / "console.txt").read_text().strip()
        driver = _browser(tmp_path)
        driver.set_page_load_timeout(60)
        driver.get(url)

        def frame_obs():
            imgs = driver.find_elements(By.CSS_SELECTOR, "#card-sim-0 img")
            if not imgs or not driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                                     imgs[0]):
                return None
            return imgs[0].get_attribute("data-obs")

        _until(lambda: frame_obs() is not None, 120)
        first = frame_obs()
        _until(lambda: frame_obs() not in (None, first), 60)  # the frame updates as the robot moves
        card = driver.find_element(By.ID, "card-sim-0")
        card.find_element(By.CSS_SELECTOR, "button[data-cmd=take]").click()
        _until(lambda: card.find_element(By.CLASS_NAME, "driving").text.startswith("operator"), 30)
        body = driver.find_element(By.TAG_NAME, "body")
        keys = "ddwr"
        for key in keys:
            body.send_keys(key)
            time.sleep(0.3)
        _until(lambda: card.find_element(By.CLASS_NAME, "opsteps").text == str(len(keys)), 60)
        card.find_element(By.CSS_SELECTOR, "button[data-cmd=mark]").click()  # a return point, with its frame
        _until(lambda: driver.execute_script(
            "const i = document.querySelector('#card-sim-0 .points img'); return !!i && i.complete && i.naturalWidth > 0"),
            30)
        driver.save_screenshot(str(tmp_path / "console.png"))
        card.find_element(By.CSS_SELECTOR, "button[data-cmd=hand-back]").click()
        _until(lambda: card.find_element(By.CLASS_NAME, "driving").text == "policy", 30)
        time.sleep(1.0)  # a few policy steps after the operator's
        card.find_element(By.CSS_SELECTOR, "button[data-cmd=end][data-label=success]").click()
        text, _ = loop.communicate(timeout=300)
    finally:
        if driver is not None:
            driver.quit()
        if loop.poll() is None:
            loop.send_signal(signal.SIGTERM)
            loop.communicate(timeout=120)
    assert loop.returncode == 0, text[-3000:]
    assert (tmp_path / "console.png").stat().st_size > 10_000
    row = json.loads((out / "episodes.jsonl").read_text().splitlines()[0])
    assert row["label"] is True and row["reason"] == "operator" and row["operator_steps"] == len(keys), row
    side = json.loads((out / "rl_steps" / "episode_000000.json").read_text())
    ops = [s["operator_action"] for s in side["steps_detail"] if s["operator_action"] is not None]
    assert ops == [[5.0, 0, 0, 1], [5.0, 0, 0, 1], [0, 5.0, 0, 1], [0, 0, 5.0, 1]]  # d d w r, gripper open
    assert all(s["sample"] is None for s in side["steps_detail"] if s["operator_action"] is not None)
    assert any(s["sample"] is not None for s in side["steps_detail"])  # the policy drove before and after
    ds = LeRobotDataset(out / "episodes")
    stored = ds.episode(0).action.tolist()
    at = [k for k, s in enumerate(side["steps_detail"]) if s["operator_action"] is not None]
    assert len(stored) == len(side["steps_detail"]) and [stored[k] for k in at] == ops  # in the dataset too
    update = json.loads((out / "learner.jsonl").read_text().splitlines()[0])
    assert update["operator_steps_added"] == len(keys) and update["operator_buffer"] == len(keys)
    stats = json.loads((out / "loop_stats.json").read_text())
    assert stats["console_takeovers"] == 1 and stats["operator_steps"] == len(keys)
    assert stats["return_points_marked"] == 1
    if os.environ.get("VLAC_CONSOLE_SCREENSHOT"):  # how the README's picture is made
        shutil.copy(tmp_path / "console.png", os.environ["VLAC_CONSOLE_SCREENSHOT"])
