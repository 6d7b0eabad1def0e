"""A probe that watches a running mission graph from outside (tests and `lgtc bench --only graph`):
when the mission starts, every drone's safe-command and pose rate, the closest pair of
simultaneous poses (one world tick: one header stamp) among flying drones, the open demand over
time and the CBF's fallbacks. It only listens.
"""
from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, String

from lgtc_ros import comm
from lgtc_ros.bags import RawBagWriter
from lgtc_ros.graph_processes import start
from lgtc_ros.launch_plan import NodeSpec
from lgtc_ros.nodes.common import LATCHED

# Deep queues: the probe counts every message even when its own executor lags. Best effort, so
# watching costs the publishers no acknowledgements (a lost message would only lower a rate).
_EVERY = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)


@dataclass
class ProbeReport:
    seconds: float
    """Wall time observed since the mission started."""
    command_hz: dict[str, float]
    """Safe commands per second of wall time, per drone."""
    command_period_hz: dict[str, float]
    """1 / the median interval between a drone's safe-command stamps: the publisher's own rate,
    which a stall of the machine (fewer commands in a second) does not move."""
    pose_hz: float
    """World ticks (distinct pose stamps) per second of wall time."""
    closest_m: float
    """Closest pair of simultaneous poses of flying drones, metres."""
    ticks_too_close: int
    """World ticks with a flying pair closer than the safety radius."""
    demand_start: float
    demand_end: float
    fallbacks: int
    cbf: dict[str, int]
    start_s: float = float("nan")
    """Wall time from starting the processes to the mission start."""
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    """{node: exit code after the stop signal}, None: still running 5 s later (killed)."""
    cpu_pct: dict[str, float] = field(default_factory=dict)
    """{node: % of one core while the mission was watched}."""
    rss_mb: dict[str, float] = field(default_factory=dict)
    """{node: resident memory MB at the end of the watch}."""
    rss_start_mb: dict[str, float] = field(default_factory=dict)
    """{node: resident memory MB when the watch began (mission start)}."""
    logs: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "logs"}


def _ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class GraphProbe(Node):
    def __init__(self, names: list[str], safety_radius_m: float, altitude_m: float, **kwargs) -> None:
        super().__init__("lgtc_probe", **kwargs)
        self.names, self.safety_m, self.altitude_m = names, safety_radius_m, altitude_m
        self.started_wall: float | None = None
        self.meta: dict | None = None
        # everything is kept with its stamp and cut at the mission start in `report`: the executor
        # may take messages of the first ticks before the latched mission description
        self.cmd_times: dict[str, list[tuple[int, float]]] = {n: [] for n in names}  # (stamp ns, receive s)
        self.poses: dict[int, dict[int, tuple[float, float, float]]] = defaultdict(dict)  # stamp ns -> drone -> xyz
        self.demand: list[tuple[int, float]] = []  # (stamp ns, open demand)
        self.cbf: comm.CbfStatus | None = None
        for i, name in enumerate(names):
            self.create_subscription(PoseStamped, f"{name}/pose", lambda m, i=i: self._on_pose(i, m), _EVERY)
            self.create_subscription(TwistStamped, f"{name}/cmd_vel_safe", lambda m, n=name: self._on_cmd(n, m),
                                     _EVERY)
        self.create_subscription(String, "lgtc/meta", self._on_meta, LATCHED)
        self.create_subscription(Float64MultiArray, "lgtc/demands", self._on_demands, _EVERY)
        self.create_subscription(Float64MultiArray, "lgtc/cbf", self._on_cbf, _EVERY)

    @property
    def started(self) -> bool:
        return self.started_wall is not None

    def _on_meta(self, msg: String) -> None:
        self.meta = json.loads(msg.data)
        self.started_wall = time.monotonic()

    def _on_cmd(self, name: str, msg: TwistStamped) -> None:
        self.cmd_times[name].append((_ns(msg.header), time.monotonic()))

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.poses[_ns(msg.header)][i] = (p.x, p.y, p.z)

    def _on_demands(self, msg: Float64MultiArray) -> None:
        got = comm.decode_demands(msg, None, 0.0, None, None)
        if got is not None:
            self.demand.append((round(got.stamp * 1e9), float(got.demand.sum())))

    def _on_cbf(self, msg: Float64MultiArray) -> None:
        got = comm.decode_cbf_status(msg)
        if got is not None:
            self.cbf = got

    def report(self) -> ProbeReport:
        now = time.monotonic()
        seconds = now - self.started_wall if self.started else 0.0
        start = self.meta["start_epoch_ns"] if self.meta is not None else 2**63
        rates, periods = {}, {}
        for name, stamped in self.cmd_times.items():
            # rate over the span the drone was commanded, so a landed drone is not a slow one
            times = [t for ns, t in stamped if ns >= start]
            rates[name] = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0
            gaps = np.diff(np.unique([ns for ns, _ in stamped if ns >= start]))
            periods[name] = 1e9 / float(np.median(gaps)) if len(gaps) > 1 else 0.0
        poses = {ns: by_drone for ns, by_drone in self.poses.items() if ns >= start}
        demand = [d for ns, d in sorted(self.demand) if ns >= start]
        closest, too_close = np.inf, 0
        for by_drone in poses.values():
            flying = np.array([xyz for xyz in by_drone.values() if xyz[2] > self.altitude_m / 2])
            if len(flying) < 2:
                continue
            d = np.sqrt(((flying[:, None, :2] - flying[None, :, :2]) ** 2).sum(-1))
            d = d[np.triu_indices(len(flying), 1)].min()
            closest = min(closest, float(d))
            too_close += int(d < self.safety_m)
        stamps = sorted(poses)
        pose_hz = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9) if len(stamps) > 2 else 0.0
        cbf = self.cbf.counters if self.cbf is not None else {}
        return ProbeReport(seconds, rates, periods, pose_hz, closest, too_close,
                           demand[0] if demand else float("nan"), demand[-1] if demand else float("nan"),
                           int(self.cbf.fallbacks.sum()) if self.cbf is not None else 0, cbf)


class BagTap:
    """Records every topic `lgtc replay` reads, serialized, at its receive time (as `ros2 bag
    record` does, with the QoS it would pick: reliable, or best effort for poses)."""

    def __init__(self, node: Node, writer: RawBagWriter) -> None:
        import importlib

        self.writer, self.clock = writer, node.get_clock()
        for spec in writer.specs.values():
            package, _, name = spec.msgtype.split("/")
            msg_type = getattr(importlib.import_module(f"{package}.msg"), name)
            qos = LATCHED if spec.kind == "meta" else (_EVERY if spec.kind == "pose" else _EVERY)
            node.create_subscription(msg_type, spec.topic, lambda raw, t=spec.topic: self._on(t, raw), qos, raw=True)

    def _on(self, topic: str, raw: bytes) -> None:
        self.writer.write(topic, self.clock.now().nanoseconds, raw)


def watch_mission(specs: list[NodeSpec], workdir: Path, domain_id: int, seconds: float, scenario,
                  start_timeout_s: float = 240.0, stop_signal: int = signal.SIGINT,
                  record: Path | None = None) -> ProbeReport:
    """Start `specs` as processes (`graph_processes.start`), wait for the mission to start, watch it
    for `seconds`, then send `stop_signal` to the process group; the report carries the probe's
    findings, the exit codes, CPU and memory per node and every node's log. `record`: a new
    folder, where every topic the replay reads is recorded as `ros2 bag record` would."""
    graph = start(specs, workdir, domain_id)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    report, t0 = None, time.monotonic()
    names = [str(n) for n in specs[0].parameters["names"]]
    writer = RawBagWriter(record, names).__enter__() if record is not None else None
    try:
        s = scenario
        probe = GraphProbe(names, s.safety_radius * s.arena_size_m / 2, s.altitude_m, context=context)
        if writer is not None:
            BagTap(probe, writer)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        while not probe.started and time.monotonic() - t0 < start_timeout_s and not graph.exited():
            executor.spin_once(timeout_sec=0.1)
        started = time.monotonic() - t0
        if probe.started:
            before = graph.usage()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            after = graph.usage()
        report = probe.report()
        report.start_s = started if probe.started else float("nan")
        if probe.started:
            report.cpu_pct = {k: 100 * (after[k][0] - before[k][0]) / seconds for k in after}
            report.rss_mb = {k: after[k][1] for k in after}
            report.rss_start_mb = {k: before[k][1] for k in before}
        executor.shutdown()
        probe.destroy_node()
    finally:
        codes = graph.stop(stop_signal, timeout_s=5.0)
        rclpy.try_shutdown(context=context)
        if writer is not None:
            writer.__exit__()
    report.exit_codes = codes
    report.logs = {spec.full_name: graph.log(spec) for spec in specs}
    return report
