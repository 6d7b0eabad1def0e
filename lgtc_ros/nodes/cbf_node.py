"""The safety filter between the policies and the drones: every tick, each flying drone's newest
nominal velocity (`/{name}/cmd_vel_nominal`, m/s) is projected to a safe one
(`/{name}/cmd_vel_safe`) by `safety.swarm.SwarmFilter` (OSQP; per drone or one swarm QP).

Parameters: scenario, names, form (decentralized | centralized), sensing_radius (arena units,
default C), max_command_age_s (older nominal commands count as "stop").
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.bridge import ArenaFrame
from lgtc_ros.nodes.common import QOS_DEPTH, mission, now_s, run, stamp_s, twist
from lgtc_ros.safety.swarm import SwarmFilter


class CbfNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_cbf", **kwargs)
        scenario, names = mission(self)
        form = self.declare_parameter("form", "decentralized").value
        radius = self.declare_parameter("sensing_radius", float(scenario.comm_radius)).value
        self.max_age = self.declare_parameter("max_command_age_s", 0.15).value
        self.filter = SwarmFilter(scenario, form, radius)
        self.frame, self.n, self.r = ArenaFrame.from_scenario(scenario), len(names), scenario.n_resources
        self.pos = np.full((self.n, 2), np.nan)
        self.v_nom = np.zeros((self.n, 2))
        self.v_stamp = np.full(self.n, -np.inf)
        self.active = np.ones(self.n, dtype=bool)
        self.stats = comm.DecodeStats()
        self.pubs = []
        for i, name in enumerate(names):
            self.create_subscription(PoseStamped, f"/{name}/pose", lambda m, i=i: self._on_pose(i, m), QOS_DEPTH)
            self.create_subscription(TwistStamped, f"/{name}/cmd_vel_nominal",
                                     lambda m, i=i: self._on_nominal(i, m), QOS_DEPTH)
            self.create_subscription(Float64MultiArray, f"/{name}/lgtc/supply",
                                     lambda m, i=i: self._on_supply(i, m), QOS_DEPTH)
            self.pubs.append(self.create_publisher(TwistStamped, f"/{name}/cmd_vel_safe", QOS_DEPTH))
        self.create_timer(scenario.dt, self._filter)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        self.pos[i] = self.frame.to_arena(np.array([msg.pose.position.x, msg.pose.position.y]))

    def _on_nominal(self, i: int, msg: TwistStamped) -> None:
        self.v_nom[i] = self.frame.velocity_to_arena(np.array([msg.twist.linear.x, msg.twist.linear.y]))
        self.v_stamp[i] = stamp_s(msg.header)

    def _on_supply(self, i: int, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self), 0.5, self.r, self.stats)
        if got is not None:
            self.active[i] = got.active

    def _filter(self) -> None:
        known = np.isfinite(self.pos).all(1)
        if not known.any():
            return
        fresh = now_s(self) - self.v_stamp <= self.max_age
        v_nom = np.where(fresh[:, None], self.v_nom, 0.0)  # a silent policy asks to stop, not to repeat
        flying = known & self.active
        v_safe = self.filter(v_nom, np.where(known[:, None], self.pos, 0.0), flying)
        for i in np.flatnonzero(flying):
            self.pubs[i].publish(twist(self, self.frame.velocity_to_metres(v_safe[i])))


def main(args=None) -> None:
    run(CbfNode, args)


if __name__ == "__main__":
    main()
