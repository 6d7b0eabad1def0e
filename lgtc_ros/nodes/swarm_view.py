"""What the swarm-wide nodes (radio, CBF) know of every drone, kept up to date by subscriptions:
its newest position (arena units) with the time it was true (the pose's stamp), and whether it
still flies (from the world's supply status)."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.nodes.common import TAKE_LATEST, guarded, now_s, stamp_s
from lgtc_ros.scenario import Scenario


class SwarmView:
    def __init__(self, node: Node, scenario: Scenario, names: list[str]):
        self.node, self.frame, self.r = node, ArenaFrame.from_scenario(scenario), scenario.n_resources
        n = len(names)
        self.pos = np.full((n, 2), np.nan)
        self.stamp = np.full(n, -np.inf)
        """[N] s: when each position was true (the pose's header stamp)."""
        self.active = np.ones(n, dtype=bool)
        self.stats = comm.DecodeStats()
        for i, name in enumerate(names):
            node.create_subscription(PoseStamped, f"{name}/pose", guarded(node, lambda m, i=i: self._on_pose(i, m)),
                                     TAKE_LATEST)
            node.create_subscription(Float64MultiArray, f"{name}/lgtc/supply",
                                     guarded(node, lambda m, i=i: self._on_supply(i, m)), TAKE_LATEST)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        t = stamp_s(msg.header)
        if t < self.stamp[i]:  # out of order: an older pose never replaces a newer one
            return
        p = msg.pose.position
        xy = np.array([p.x, p.y])
        if not np.isfinite(xy).all():  # keep the last good pose: its age grows, and so does its clearance
            self.stats.record("pose", "non_finite", f"drone {i}")
            return
        self.pos[i] = self.frame.to_arena(xy)
        self.stamp[i] = t

    def _on_supply(self, i: int, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self.node), 0.5, self.r, self.stats)
        if got is not None:
            self.active[i] = got.active

    def located(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions [N,2] with unknown ones at 0, known & flying [N] bool)."""
        known = np.isfinite(self.pos).all(1)
        return np.where(known[:, None], self.pos, 0.0), known & self.active
