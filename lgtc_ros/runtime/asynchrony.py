"""The timing of a ROS graph, inside the lockstep runtime: late, jittered, reordered, lost and
lower-rate links between the world, the CBF and the plant.

In the runtime every tick is exact: the CBF filters the poses of this tick and the world applies
the result at once. In the ROS graph (one process per node) none of that holds: a pose reaches
the CBF node 0-2 ticks late and out of step with the other drones' poses, the safe command reaches
the world a tick later or not at all, and the world keeps flying the last command it got. Those
are the conditions under which the graph once let drones come within half the safety radius
while the runtime flew 0 collisions in 100 episodes; `Asynchrony` brings them into the runtime,
so its tests cover them (test_runtime.py: the filter without pose ages collides here, the
filter with them does not).

Every link is a `DelayedLink`: each tick, each drone's sample is sent with a random delay of
0..`max_delay` ticks (so consecutive samples overtake each other) or lost; the receiver keeps the
newest sample it has (by stamp), as the nodes do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lgtc_ros.safety.swarm import pose_uncertainty, stale_poses


@dataclass(frozen=True)
class Asynchrony:
    pose_delay_ticks: int = 2
    """A pose reaches the CBF 0..this many ticks late (uniform, per drone and tick)."""
    nominal_delay_ticks: int = 1
    """A nominal command reaches the CBF 0..this many ticks late."""
    command_delay_ticks: int = 1
    """A safe command reaches the world 0..this many ticks late."""
    cbf_period_ticks: int = 1
    """The CBF filters every this many ticks (2: 10 Hz)."""
    drop_prob: float = 0.0
    """Each pose and command sample is lost with this probability."""
    hold_ticks: int = 2
    """The world flies a safe command until it is this many ticks old, then stops the drone (the
    world node's `max_command_age_s` / dt)."""
    nominal_hold_ticks: int = 3
    """The CBF treats an older nominal command as "stop" (the CBF node's `max_command_age_s` / dt)."""
    account_for_age: bool = True
    """The CBF keeps pairs v_max x (pose age + `command_latency_ticks`) farther apart, as the CBF
    node does; False is the filter that trusted every pose as current."""
    command_latency_ticks: float = 1.0
    """The latency until the world applies a safe command that the CBF allows for (the CBF node's
    `command_latency_s` / dt)."""
    max_pose_age_ticks: int = 10
    """The CBF holds a drone (zero velocity) whose newest pose is older (the CBF node's
    `max_pose_age_s` / dt)."""
    seed: int = 0

    def validate(self) -> None:
        for name in ("pose_delay_ticks", "nominal_delay_ticks", "command_delay_ticks", "hold_ticks",
                     "nominal_hold_ticks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 0")
        for name in ("cbf_period_ticks", "max_pose_age_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"drop_prob = {self.drop_prob}: must be in [0, 1)")
        if self.command_latency_ticks < 0:
            raise ValueError(f"command_latency_ticks = {self.command_latency_ticks}: must be >= 0")


class DelayedLink:
    """N drones' samples ([N, dim] per tick) on a late, jittered, lossy link; the receiver keeps
    the newest sample per drone (`value`, sent at tick `stamp`; -1: none yet)."""

    def __init__(self, n: int, dim: int, max_delay: int, drop_prob: float, rng: np.random.Generator):
        self.max_delay, self.drop_prob, self.rng = max_delay, drop_prob, rng
        self.value = np.zeros((n, dim))
        self.stamp = np.full(n, -1, dtype=np.int64)
        self._pending: list[tuple[int, int, int, np.ndarray]] = []  # (due, drone, stamp, value)

    def send(self, tick: int, values: np.ndarray, senders: np.ndarray) -> None:
        """Send each row of `values` [N, dim] whose `senders` [N] flag is set."""
        n = len(values)
        delays = self.rng.integers(0, self.max_delay + 1, n)
        lost = self.rng.random(n) < self.drop_prob
        for i in np.flatnonzero(senders & ~lost):
            self._pending.append((tick + int(delays[i]), int(i), tick, values[i].copy()))

    def receive(self, tick: int) -> None:
        due = [p for p in self._pending if p[0] <= tick]
        self._pending = [p for p in self._pending if p[0] > tick]
        for _, i, stamp, value in due:
            if stamp > self.stamp[i]:  # an older sample arriving late never replaces a newer one
                self.value[i], self.stamp[i] = value, stamp


class CbfView(NamedTuple):
    """What the CBF node sees at one of its ticks."""

    pos: np.ndarray
    """Newest pose per drone [N,2]."""
    v_nominal: np.ndarray
    """Newest nominal command [N,2], 0 where older than `nominal_hold_ticks`."""
    known: np.ndarray
    """Drones with a pose [N]."""
    uncertainty: np.ndarray | None
    """[N], or None (`account_for_age` False)."""
    hold: np.ndarray
    """Drones whose pose is older than `max_pose_age_ticks` [N]."""


class GraphTiming:
    """The three links of the sim graph around the CBF (world -> CBF poses, agents -> CBF nominal
    commands, CBF -> world safe commands) and the world's command hold."""

    def __init__(self, cfg: Asynchrony, n: int):
        cfg.validate()
        rng = np.random.default_rng(cfg.seed)
        self.cfg = cfg
        self.poses = DelayedLink(n, 2, cfg.pose_delay_ticks, cfg.drop_prob, rng)
        self.nominal = DelayedLink(n, 2, cfg.nominal_delay_ticks, cfg.drop_prob, rng)
        self.safe = DelayedLink(n, 2, cfg.command_delay_ticks, cfg.drop_prob, rng)

    def cbf_inputs(self, tick: int, pos: np.ndarray, v_nominal: np.ndarray, active: np.ndarray,
                   v_max: float, dt: float) -> CbfView | None:
        """Send this tick's poses and nominal commands; if the CBF runs this tick, what it sees."""
        c = self.cfg
        self.poses.send(tick, pos, active)
        self.nominal.send(tick, v_nominal, active)
        self.poses.receive(tick)
        self.nominal.receive(tick)
        if tick % c.cbf_period_ticks:
            return None
        known = active & (self.poses.stamp >= 0)
        fresh = (self.nominal.stamp >= 0) & (tick - self.nominal.stamp <= c.nominal_hold_ticks)
        v_nom = np.where(fresh[:, None], self.nominal.value, 0.0)
        uncertainty = None
        if c.account_for_age:  # as the CBF node computes it, on the tick clock
            uncertainty = pose_uncertainty(tick * dt, self.poses.stamp * dt, known, v_max, c.command_latency_ticks * dt)
        hold = stale_poses(tick, self.poses.stamp, known, c.max_pose_age_ticks)
        return CbfView(self.poses.value.copy(), v_nom, known, uncertainty, hold)

    def applied(self, tick: int, v_safe: np.ndarray | None, sent_to: np.ndarray) -> np.ndarray:
        """Send the CBF's safe commands (None: it did not run) and return what the world flies this
        tick: each drone's newest command while it is at most `hold_ticks` old, else 0."""
        if v_safe is not None:
            self.safe.send(tick, v_safe, sent_to)
        self.safe.receive(tick)
        fresh = (self.safe.stamp >= 0) & (tick - self.safe.stamp <= self.cfg.hold_ticks)
        return np.where(fresh[:, None], self.safe.value, 0.0)
