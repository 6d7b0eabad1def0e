"""The bridge node against Crazyswarm2's interfaces, on real rclpy.

The real `bridge_node` runs as its own process (its console script with `--ros-args --params-file`,
as launch_ros starts it: `lgtc_ros.graph_processes`) against a fake Crazyswarm2 server in the test
process. The fake speaks `crazyflie_interfaces` generated from Crazyswarm2's own field lists
(test/crazyflie_interfaces, built once into the venv by `make crazyflie-interfaces`) on Crazyswarm2's
names: services `{name}/takeoff`, `{name}/notify_setpoints_stop`, `{name}/land` (default service
QoS), subscription `{name}/cmd_full_state` (depth 10, as its simulator subscribes), and it publishes
`{name}/pose` at 50 Hz as the C++ server does with pose logging on, tracking each setpoint exactly.

Timing is judged on one clock, the wall clock the bridge stamps its messages with (ROS system
time): the bridge's own setpoint stamps, the stamps of every input the fakes publish, and the times
the fake's services are called and answer. Every window starts and ends at an event seen in these
data (a takeoff answer, the last command before a gap, a failed land call), never at an offset from
the start: the test process shares a small machine with the bridge (and with CI's other jobs), and a
late input is judged as the bridge sees it (the bridge must then hover), not as a failure.

The cflib link's pose log (cflib's own packet thread -> guard condition -> ROS publish) runs in one
process with cflib's real classes on a stubbed radio.
"""
from __future__ import annotations

import bisect
import gc
import importlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.graph_processes import start, unclean_exits
from lgtc_ros.launch_plan import NodeSpec
from lgtc_ros.nodes.common import LATCHED, to_msg
from lgtc_ros.scenario import load_scenario, resolve_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_FILE = str(resolve_scenario("discharge_5x3"))
SCENARIO = load_scenario(SCENARIO_FILE)
NAMES = list(comm.default_names(SCENARIO.n_agents))
_domains = itertools.count()

DELIVERY_S = 0.1
"""An input published this long before a tick has reached the bridge by then (localhost delivery
takes ~1 ms; the margin covers a bridge busy with other callbacks on a loaded machine)."""


def domain_id() -> int:
    """A ROS_DOMAIN_ID of this test's own (test_ros_graph.py counts from another offset)."""
    return 1 + (os.getpid() * 17 + 53 + next(_domains)) % 100


@pytest.fixture(scope="module")
def interfaces():
    """Crazyswarm2's crazyflie_interfaces, generated into the venv once (`make crazyflie-interfaces`)."""
    try:
        import crazyflie_interfaces.srv  # noqa: F401
    except ImportError:
        if os.environ.get("ROS_DISTRO"):
            pytest.skip("a sourced ROS 2 without Crazyswarm2: build Crazyswarm2's crazyflie_interfaces in its "
                        "workspace (the Makefile builds it only against the venv's pip ROS 2)")
        done = subprocess.run(["make", "-s", "crazyflie-interfaces"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"make crazyflie-interfaces failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        importlib.invalidate_caches()
    from crazyflie_interfaces.msg import FullState
    from crazyflie_interfaces.srv import Land, NotifySetpointsStop, Takeoff

    return FullState, Takeoff, Land, NotifySetpointsStop


def seconds(t) -> float:
    """builtin_interfaces Time or Duration -> s."""
    return t.sec + t.nanosec * 1e-9


def stamp(msg) -> float:
    return seconds(msg.header.stamp)


# ----------------------------------------------------------------------------- the fake Crazyswarm2 server


class FakeCrazyswarm2(Node):
    """Crazyswarm2's server as the bridge sees it. `answers[(name, service)]`: an iterator of how each
    call is answered: "ok", "silent" (never: a stuck server) or seconds to wait before answering.
    Drones in `missing` have no services (their server never came up).

    Its services live on a node of their own (`service_node`) spun by a multi-threaded executor: a
    silent or slow answer holds one thread, never the others. Its topics (setpoints in, poses out) are
    spun with the fake swarm's on one single-threaded executor: it keeps up with 20 Hz setpoints and
    50 Hz poses on a busy machine, where a multi-threaded rclpy executor's threads fight over the GIL.

    Records, on the wall clock (the bridge's stamps): `calls[name]` [(service, s, request)],
    `answered[name]` [(service, s)], `setpoints[name]` [(received s, FullState)], `pose_stamps`
    [s] (every drone's pose is published on each)."""

    def __init__(self, context, interfaces, answers=None, missing=()):
        super().__init__("crazyflie_server", context=context)
        FullState, Takeoff, Land, NotifySetpointsStop = interfaces
        robots = yaml.safe_load((ROOT / "config" / "crazyflies.yaml").read_text())["robots"]
        self.pos = {n: np.array(robots[n]["initial_position"], dtype=float) for n in NAMES}
        self.calls = defaultdict(list)
        self.answered = defaultdict(list)
        self.setpoints = defaultdict(list)
        self.pose_stamps = []
        self.answers, self.release = answers or {}, threading.Event()
        self.serving = 0  # callbacks still running (a silent one runs until `release`)
        self.service_node = Node("crazyflie_server_services", context=context)
        group = ReentrantCallbackGroup()
        self.pose_pubs = {}
        for n in NAMES:
            if n in missing:
                continue
            for service, srv in (("takeoff", Takeoff), ("land", Land), ("notify_setpoints_stop", NotifySetpointsStop)):
                self.service_node.create_service(srv, f"{n}/{service}", self._server(n, service), callback_group=group)
            self.create_subscription(FullState, f"{n}/cmd_full_state", lambda m, n=n: self._on_setpoint(n, m), 10)
            self.pose_pubs[n] = self.create_publisher(PoseStamped, f"{n}/pose", 10)
        self.create_timer(0.02, self._publish_poses)

    def _server(self, name, service):
        def serve(request, response):
            self.calls[name].append((service, time.time(), request))
            answer = next(self.answers.get((name, service), iter(())), "ok")
            self.serving += 1
            try:
                if answer == "silent":
                    self.release.wait()  # until the test ends: no response ever reaches the bridge
                    return response
                if answer != "ok":
                    time.sleep(answer)
                if service in ("takeoff", "land"):
                    self.pos[name][2] = request.height
                self.answered[name].append((service, time.time()))
                return response
            finally:
                self.serving -= 1
        return serve

    def _on_setpoint(self, name, msg):
        self.setpoints[name].append((time.time(), msg))
        p = msg.pose.position
        self.pos[name] = np.array([p.x, p.y, p.z])

    def _publish_poses(self):
        now = self.get_clock().now()
        for name, pub in self.pose_pubs.items():
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = now.to_msg(), "world"
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in self.pos[name])
            pub.publish(msg)
        self.pose_stamps.append(now.nanoseconds * 1e-9)

    def called(self, name):
        return [s for s, _, _ in self.calls[name]]

    def call_times(self, name, service):
        return [t for s, t, _ in self.calls[name] if s == service]

    def streamed(self, name):
        """The drone's setpoints in the order the bridge stamped them."""
        return sorted((m for _, m in self.setpoints[name]), key=stamp)


class Swarm(Node):
    """The rest of the graph as the bridge sees it: safe commands, the world's supplies, the airborne flag.
    `commands(name, t)` / `active(name, t)` with t = seconds since airborne (None before). Records the
    stamp of every command it sends (`sent[name]`) and of every supply that grounds a drone
    (`grounded[name]`)."""

    def __init__(self, context, commands, active):
        super().__init__("fake_swarm", context=context)
        self.commands, self.active, self.airborne_at = commands, active, None
        self.sent, self.grounded = defaultdict(list), defaultdict(list)
        self.cmd = {n: self.create_publisher(TwistStamped, f"{n}/cmd_vel_safe", 10) for n in NAMES}
        self.supply = {n: self.create_publisher(Float64MultiArray, f"{n}/lgtc/supply", 10) for n in NAMES}
        self.create_subscription(Bool, "lgtc/airborne", self._on_airborne, LATCHED)
        self.create_timer(SCENARIO.dt, self._tick)

    def _on_airborne(self, msg):
        if msg.data and self.airborne_at is None:
            self.airborne_at = time.monotonic()

    def since(self) -> float | None:
        return None if self.airborne_at is None else time.monotonic() - self.airborne_at

    def _tick(self):
        t, now = self.since(), self.get_clock().now()
        for i, name in enumerate(NAMES):
            v = self.commands(name, t)
            if v is not None:
                msg = TwistStamped()
                msg.header.stamp, msg.header.frame_id = now.to_msg(), "world"
                msg.twist.linear.x, msg.twist.linear.y = float(v[0]), float(v[1])
                self.cmd[name].publish(msg)
                self.sent[name].append(now.nanoseconds * 1e-9)
            status = comm.SupplyStatus(i, now.nanoseconds * 1e-9, np.array([0, 0, 0.4, 0.0]), self.active(name, t))
            self.supply[name].publish(to_msg(comm.encode_supply(status)))
            if not status.active:
                self.grounded[name].append(now.nanoseconds * 1e-9)


class Harness:
    """The bridge process, the fake server and the fake swarm on one fresh ROS domain."""

    def __init__(self, tmp_path, interfaces, params, commands, active, answers=None, missing=()):
        # the test process imports torch (conftest): a full collection would pause its 50 Hz poses and
        # 20 Hz commands for ~0.1 s; what exists now is never garbage, so leave it out of collections
        gc.collect()
        gc.freeze()
        try:
            self.domain = domain_id()
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=self.domain)
            self.server = FakeCrazyswarm2(self.context, interfaces, answers, missing)
            self.swarm = Swarm(self.context, commands, active)
            self.topics = SingleThreadedExecutor(context=self.context)
            for node in (self.server, self.swarm):
                self.topics.add_node(node)
            self.services = MultiThreadedExecutor(num_threads=8, context=self.context)
            self.services.add_node(self.server.service_node)
            for executor in (self.topics, self.services):
                threading.Thread(target=executor.spin, daemon=True).start()
            self.spec = NodeSpec("bridge_node", "lgtc_bridge", {
                "scenario": SCENARIO_FILE, "names": NAMES, "backend": "crazyswarm2", "autostart": True,
                "takeoff_s": 1.0, "land_s": 1.0, "service_timeout_s": 0.5, "service_retry_s": 0.3, **params})
            self.graph = start([self.spec], tmp_path, self.domain)
            self.sched: list[tuple[float, float]] = []  # (wall s, s the bridge waited for a CPU so far)
        except BaseException:
            gc.unfreeze()
            raise

    def log(self) -> str:
        return self.graph.log(self.spec)

    def _sample(self) -> None:
        try:  # the bridge's main thread (its executor): ns on a CPU, ns runnable but waiting for one, slices
            waited_ns = int(Path(f"/proc/{self.graph.procs[0].pid}/schedstat").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return
        self.sched.append((time.time(), waited_ns * 1e-9))

    def starved(self, t0: float, t1: float) -> float:
        """Seconds the bridge's executor was runnable but waited for a CPU (the machine was busy
        elsewhere) between wall times t0 and t1 (a bit more: the samples around them); 0 without
        Linux's schedstat."""
        before = [w for t, w in self.sched if t <= t0] or [w for _, w in self.sched[:1]]
        after = [w for t, w in self.sched if t >= t1] or [w for _, w in self.sched[-1:]]
        return after[0] - before[-1] if before and after else 0.0

    def wait(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while not condition():
            self._sample()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; bridge log:\n{self.log()[-4000:]}")
            if self.graph.exited():
                raise AssertionError(f"the bridge exited: {self.graph.exited()}\n{self.log()[-4000:]}")
            time.sleep(0.02)
        self._sample()

    def quiet(self, name: str, for_s: float) -> bool:
        """No setpoint for `name` received for `for_s` (it has stopped streaming)."""
        got = self.server.setpoints[name]
        return bool(got) and time.time() - got[-1][0] > for_s

    def close(self) -> tuple[int | None, str]:
        try:
            codes = self.graph.stop(signal.SIGINT, timeout_s=10.0)
            self.server.release.set()  # the silent answers go out now, to nobody
            deadline = time.monotonic() + 5.0
            while self.server.serving and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)  # their responses are sent after the callbacks return
            for executor in (self.topics, self.services):
                executor.shutdown(timeout_sec=5.0)
            for node in (self.server.service_node, self.server, self.swarm):
                node.destroy_node()
            rclpy.try_shutdown(context=self.context)
        finally:
            gc.unfreeze()
        return codes[self.spec.full_name], self.log()


def newest(times, before: float) -> float:
    """The newest of `times` (sorted) at or before `before`; -inf if none."""
    i = bisect.bisect_right(times, before)
    return times[i - 1] if i else -np.inf


def flown_from_fresh_inputs(t: float, commands, poses, since: float) -> bool:
    """The setpoint the bridge stamped `t` was made while its inputs were fresh: a command sent after
    `since` and a pose had both reached it (DELIVERY_S before the tick), and neither was older than
    its watchdog's hover_after_s (0.25 s, 0.5 s) allows, with DELIVERY_S to spare."""
    command, pose = newest(commands, t - DELIVERY_S), newest(poses, t - DELIVERY_S)
    return command >= since and t - command < 0.25 - DELIVERY_S / 2 and t - pose < 0.5 - DELIVERY_S


# ----------------------------------------------------------------------------- the mission


def test_the_bridge_flies_a_mission_through_crazyswarm2s_services(tmp_path, interfaces):
    """Takeoff per drone (height, duration), 20 Hz full-state setpoints from safe velocities in frame
    'world', hover while commands are late, land on command silence and on discharge; land only
    after notify_setpoints_stop has answered (answers here take 0.8 s), streaming never stalled."""
    def commands(name, t):
        if name == "cf1":
            return (0.2, 0.0)
        if name == "cf2":
            return None if t is not None and 1.0 <= t < 2.0 else (0.0, 0.1)  # a 1 s gap
        return (0.0, 0.0) if name == "cf3" else None                        # cf4, cf5: never commanded

    def active(name, t):
        return not (name == "cf3" and t is not None and t >= 1.0)          # cf3 discharges at 1 s

    answers = {(n, "notify_setpoints_stop"): itertools.repeat(0.8) for n in NAMES}
    h = Harness(tmp_path, interfaces, {"service_timeout_s": 2.0}, commands, active, answers)
    s, swarm = h.server, h.swarm
    try:                                                                    # cf1, cf2 stream 4 s; the others land
        h.wait(lambda: swarm.since() is not None and swarm.since() > 4.0 and (
            all(s.call_times(n, "land") for n in ("cf3", "cf4", "cf5")) or swarm.since() > 8.0), 60.0, "the mission")
    finally:
        code, log = h.close()
    assert not unclean_exits({"bridge": code}, {"bridge": log}) and "Traceback" not in log, log[-3000:]
    streamed = {n: s.streamed(n) for n in NAMES}
    stamps = {n: np.array([stamp(m) for m in streamed[n]]) for n in NAMES}

    for name in NAMES:                                                      # one takeoff each: height, duration
        ((_, called, takeoff),) = [c for c in s.calls[name] if c[0] == "takeoff"]
        assert takeoff.height == pytest.approx(SCENARIO.altitude_m) and seconds(takeoff.duration) == 1.0
        assert takeoff.group_mask == 0
        (answered,) = [t for srv, t in s.answered[name] if srv == "takeoff"]
        assert stamps[name][0] >= answered + 1.0 > called + 1.0, name      # streams once the takeoff is done
        assert {m.header.frame_id for m in streamed[name]} == {"world"}, name
        assert len(set(stamps[name])) == len(stamps[name]), name            # one setpoint a tick

    for name in NAMES:                                                      # 20 Hz by the bridge's own clock
        assert np.median(np.diff(stamps[name])) == pytest.approx(SCENARIO.dt, abs=0.005), name
    for name in ("cf1", "cf2"):                                             # over the whole flight, every tick
        span = stamps[name][-1] - stamps[name][0]                           # sent, but those missed while the
        missed = span - (len(stamps[name]) - 1) * SCENARIO.dt              # machine gave the bridge no CPU
        starved = h.starved(stamps[name][0], stamps[name][-1])
        assert span > 3.5 and (len(stamps[name]) - 1) / span <= 20.5, (name, span, len(stamps[name]))
        assert missed <= starved + 2 * SCENARIO.dt, (name, f"{missed:.2f} s of {span:.2f} s missed, {starved:.2f} s "
                                                     f"waiting for a CPU; rate {(len(stamps[name]) - 1) / span:.1f} Hz")
    for name in ("cf3", "cf4", "cf5"):                                      # never blocked by the 0.8 s answers
        ((_, notify_t, _),) = [c for c in s.calls[name] if c[0] == "notify_setpoints_stop"]
        (notified,) = [t for srv, t in s.answered[name] if srv == "notify_setpoints_stop"]
        during = np.count_nonzero((stamps["cf1"] > notify_t) & (stamps["cf1"] < notified))
        assert during >= (0.8 - h.starved(notify_t, notified)) / SCENARIO.dt - 3, (name, during)

    fresh = {}                                                              # fly the safe velocity, on the host,
    for name, v in (("cf1", (0.2, 0.0)), ("cf2", (0.0, 0.1))):              # from the first command of the mission
        fresh[name] = [flown_from_fresh_inputs(t, swarm.sent[name], s.pose_stamps, stamps[name][0])
                       for t in stamps[name]]
        assert sum(fresh[name]) >= 40, (name, sum(fresh[name]))             # (else the test process starved)
        flown = [m for m, ok in zip(streamed[name], fresh[name]) if ok]
        assert all((m.twist.linear.x, m.twist.linear.y) == pytest.approx(v) for m in flown), name
        assert all(m.pose.position.z == pytest.approx(SCENARIO.altitude_m) for m in streamed[name]), name
    pairs = [(a, b) for (a, ok_a), (b, ok_b) in itertools.pairwise(zip(streamed["cf1"], fresh["cf1"])) if ok_a and ok_b]
    steps = np.array([b.pose.position.x - a.pose.position.x for a, b in pairs]) / (0.2 * SCENARIO.dt)
    assert len(steps) > 30                                                   # v * dt a tick (a lost one: 2)
    assert np.allclose(steps, np.round(steps), atol=1e-3) and set(np.round(steps)) <= {1.0, 2.0, 3.0}

    sent = np.array(swarm.sent["cf2"])                                      # cf2's commands stop for 1 s:
    gap = int(np.argmax(np.diff(sent)))                                     # it holds its position
    last, resumed = sent[gap], sent[gap + 1]
    assert resumed - last > 0.9
    held = [m for m in streamed["cf2"] if last + 0.25 + DELIVERY_S <= stamp(m) < resumed]
    assert len(held) >= 5, [stamp(m) - last for m in streamed["cf2"]]
    assert all(m.twist.linear.x == m.twist.linear.y == 0.0 for m in held)
    assert len({(m.pose.position.x, m.pose.position.y) for m in held}) == 1
    assert any(m.twist.linear.y == pytest.approx(0.1) for m in streamed["cf2"] if stamp(m) > resumed)
    assert "cf2: hovering (no safe command for 0.25 s)" in log
    assert s.called("cf1") == s.called("cf2") == ["takeoff"]              # never landed

    for name in ("cf3", "cf4", "cf5"):                                      # discharge; command silence
        assert s.called(name) == ["takeoff", "notify_setpoints_stop", "land"], (name, s.called(name))
        ((_, notify_t, notify),) = [c for c in s.calls[name] if c[0] == "notify_setpoints_stop"]
        (notified,) = [t for srv, t in s.answered[name] if srv == "notify_setpoints_stop"]
        ((_, land_t, land),) = [c for c in s.calls[name] if c[0] == "land"]
        assert land_t >= notified >= notify_t + 0.8                        # chained on notify's answer
        assert notify.remain_valid_millisecs == 100 and notify.group_mask == 0
        assert land.height == pytest.approx(0.04) and seconds(land.duration) == 1.0
        assert stamps[name][-1] < notify_t                                  # no streaming after the hand-over
    assert notify_time(s, "cf3") > swarm.grounded["cf3"][0] > stamps["cf3"][0]   # lands when grounded
    for name in ("cf4", "cf5"):                                             # ... or after 1.5 s of silence
        assert notify_time(s, name) - stamps[name][0] >= 1.5 - SCENARIO.dt
    assert "cf3: landing (the world grounded it: its supply is gone)" in log
    assert "cf4: landing (no safe command for 1.5 s)" in log and "every drone is airborne" in log


def notify_time(server, name) -> float:
    (t,) = server.call_times(name, "notify_setpoints_stop")
    return t


def test_failed_service_calls_are_logged_and_retried_or_land_the_drone(tmp_path, interfaces):
    """cf1's first takeoff is never answered (retried: flies); cf2's never (lands in case it rose);
    cf3's server never came up (not available: stays down, the mission starts without it); cf4's
    land is never answered (lands by a streamed descent)."""
    def commands(name, t):
        return (0.0, 0.0) if name in ("cf1", "cf4", "cf5") else None

    def active(name, t):
        return not (name == "cf4" and t is not None and t >= 1.0)

    answers = {("cf1", "takeoff"): iter(["silent", "ok"]), ("cf2", "takeoff"): itertools.repeat("silent"),
               ("cf4", "land"): itertools.repeat("silent")}
    h = Harness(tmp_path, interfaces, {"autostart_wait_s": 2.0}, commands, active, answers, missing=("cf3",))
    s = h.server

    def descended():                                                        # cf4 reached the ground, then stopped
        got, land = s.setpoints["cf4"], s.call_times("cf4", "land")
        return len(land) == 2 and (got and got[-1][1].pose.position.z < 0.05 and h.quiet("cf4", 0.5)
                                   or time.time() > land[-1] + 4.0)        # (else: no descent, judged below)

    try:
        h.wait(lambda: h.swarm.since() is not None and h.swarm.since() > 2.0 and descended(), 60.0, "cf4's descent")
    finally:
        code, log = h.close()
    assert not unclean_exits({"bridge": code}, {"bridge": log}) and "Traceback" not in log, log[-3000:]

    assert s.called("cf1") == ["takeoff", "takeoff"]
    (answered,) = [t for srv, t in s.answered["cf1"] if srv == "takeoff"]
    assert s.streamed("cf1") and stamp(s.streamed("cf1")[0]) >= answered + 1.0   # the retry flies
    assert "cf1: takeoff failed: no response within 0.5 s (attempt 1 of 2); retrying in 0.3 s" in log
    assert s.called("cf2") == ["takeoff", "takeoff", "land"] and not s.setpoints["cf2"]
    assert ("cf2: takeoff failed: no response within 0.5 s (attempt 2 of 2); cf2 does not fly this mission "
            "and lands in case it rose") in log
    assert not s.calls["cf3"] and ("cf3: takeoff failed: service /cf3/takeoff not available (attempt 2 of 2); "
                                   "cf3 stays on the ground and does not fly this mission") in log
    assert "airborne: cf1, cf4, cf5; not flying: cf2, cf3: the mission starts without them" in log

    assert s.called("cf4") == ["takeoff", "notify_setpoints_stop", "land", "land"]
    assert "cf4: land failed: no response within 0.5 s (attempt 2 of 2); landing cf4 by streaming a descent" in log
    streamed = s.streamed("cf4")                                            # nothing between the hand-over
    flown = [m for m in streamed if stamp(m) < notify_time(s, "cf4")]      # and the descent
    assert flown and not [m for m in streamed if notify_time(s, "cf4") <= stamp(m) <= s.call_times("cf4", "land")[-1]]
    descent = [m for m in streamed if stamp(m) > s.call_times("cf4", "land")[-1]]
    z = np.array([m.pose.position.z for m in descent])
    assert len(descent) > 20 and z[0] > 0.9 and z[-1] == z.min() == pytest.approx(0.04, abs=1e-6), z
    assert (np.diff(z) <= 1e-9).all() and min(m.twist.linear.z for m in descent) < -0.5
    assert {(m.pose.position.x, m.pose.position.y) for m in descent} == {(flown[-1].pose.position.x,
                                                                           flown[-1].pose.position.y)}
    span = stamp(descent[-1]) - stamp(descent[0])                           # land_s down, 0.5 s held: then stops
    starved = h.starved(stamp(descent[0]), stamp(descent[0]) + 1.5)
    assert 1.5 - 2 * SCENARIO.dt - starved < span < 1.5 + SCENARIO.dt / 2, (span, starved)
    assert s.called("cf5") == ["takeoff"]


# ----------------------------------------------------------------------------- cflib: the pose log


def test_the_cflib_link_publishes_each_drones_state_estimate_as_its_pose(monkeypatch):
    """backend cflib: cflib's packet thread delivers a state-estimate sample; the bridge publishes it
    as `{name}/pose` (frame 'world', stamped with its clock at receipt) from its executor, and flies
    on it."""
    import cflib.crtp

    import lgtc_ros.cflib_link as cflib_link
    from lgtc_ros.nodes.bridge_node import BridgeNode
    from test_bridge import RadioSyncCrazyflie

    monkeypatch.setattr(cflib.crtp, "init_drivers", lambda *a, **k: None)
    monkeypatch.setattr(cflib_link, "_drivers_initialised", False)
    made = {}
    monkeypatch.setattr(cflib_link, "default_cf_factory", lambda uri: made.setdefault(uri, RadioSyncCrazyflie(uri)))
    uris = [f"radio://0/80/2M/E7E7E7E70{i + 1}" for i in range(len(NAMES))]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    bridge = probe = None
    try:
        bridge = BridgeNode(context=context, parameter_overrides=[
            Parameter("scenario", value="discharge_5x3"), Parameter("backend", value="cflib"),
            Parameter("uris", value=uris)])
        probe = Node("probe", context=context)
        got = []
        probe.create_subscription(PoseStamped, "cf2/pose", got.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(bridge)
        executor.add_node(probe)
        assert all(made[u].radio.started.wait(5.0) for u in uris)          # every block started (20 ms)
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            made[uris[1]].radio.log(4321, (-0.8, -1.6, 0.03))             # cf2 logs; cflib's thread calls back
            executor.spin_once(timeout_sec=0.05)
        assert got, "no pose published"
        msg, now = got[0], bridge.get_clock().now().nanoseconds * 1e-9
        assert msg.header.frame_id == "world"
        assert (msg.pose.position.x, msg.pose.position.y, msg.pose.position.z) == pytest.approx((-0.8, -1.6, 0.03))
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        assert now - 2.0 < stamp <= now                                    # the bridge's clock at receipt
        pose, received = bridge.flights["cf2"].last_pose
        assert pose == pytest.approx([-0.8, -1.6, 0.03]) and received == pytest.approx(stamp)
        assert bridge.flights["cf1"].last_pose is None
    finally:
        for node in (probe, bridge):
            if node is not None:
                node.destroy_node()                                        # the bridge closes the links
        rclpy.try_shutdown(context=context)


# ----------------------------------------------------------------------------- the node in one process


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id())
    yield ctx
    rclpy.try_shutdown(context=ctx)


def bridge(context, namespace="/", **values):
    from lgtc_ros.nodes.bridge_node import BridgeNode

    return BridgeNode(context=context, namespace=namespace, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"scenario": "discharge_5x3", **values}.items()])


def test_names_follow_the_namespace_parameters_are_described_and_qos_matches_crazyswarm2(context, interfaces):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    node = bridge(context, "/lab_a")
    try:
        pubs = {p.topic_name: p.qos_profile for p in node.publishers}
        subs = {s.topic_name: s.qos_profile for s in node.subscriptions}
        clients = {c.service_name for c in node.clients}
        for n in NAMES:                                                 # relative names, as Crazyswarm2's own
            assert {f"/lab_a/{n}/takeoff", f"/lab_a/{n}/notify_setpoints_stop", f"/lab_a/{n}/land"} <= clients
            assert pubs[f"/lab_a/{n}/cmd_full_state"].reliability == ReliabilityPolicy.RELIABLE  # as its sim subscribes
            for topic in (f"/lab_a/{n}/pose", f"/lab_a/{n}/cmd_vel_safe", f"/lab_a/{n}/lgtc/supply"):
                assert subs[topic].reliability == ReliabilityPolicy.BEST_EFFORT and subs[topic].depth == 1
        assert pubs["/lab_a/lgtc/airborne"].durability == DurabilityPolicy.TRANSIENT_LOCAL
        for name in node._parameters:
            if name != "use_sim_time":
                (d,) = node.describe_parameters([name])
                assert d.description and d.read_only, name
    finally:
        node.destroy_node()


@pytest.mark.parametrize("values, words", [
    ({"hover_after_s": 2.0}, "parameter 'land_after_s' = 1.5: must be greater than hover_after_s"),
    ({"pose_land_after_s": 0.4}, "parameter 'pose_land_after_s' = 0.4: must be greater than pose_hover_after_s"),
    ({"backend": "wifi"}, "parameter 'backend' = 'wifi'"),
])
def test_a_bridge_that_cannot_start_says_which_parameter(context, interfaces, values, words):
    from lgtc_ros.nodes.common import StartupError

    with pytest.raises(StartupError, match=words.replace("(", r"\(")):
        bridge(context, **values)


def test_pose_from_tf_needs_tf2_ros_and_says_so(context, interfaces):
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        from lgtc_ros.nodes.common import StartupError

        with pytest.raises(StartupError, match="parameter 'pose_from_tf' = True: tf2_ros is not importable"):
            bridge(context, pose_from_tf=True)
    else:
        node = bridge(context, pose_from_tf=True)                      # a sourced ROS 2: TF is read
        assert node.tf is not None and "/cf1/pose" in {p.topic_name for p in node.publishers}
        node.destroy_node()
