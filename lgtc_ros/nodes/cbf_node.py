"""The safety filter between the policies and the drones: every tick, each flying drone's newest
nominal velocity (`/{name}/cmd_vel_nominal`, m/s) is projected to a safe one
(`/{name}/cmd_vel_safe`) by `safety.swarm.SwarmFilter` (OSQP; per drone or one swarm QP).

Parameters: scenario, names, form (decentralized | centralized), sensing_radius (arena units,
default C), max_command_age_s (older nominal commands count as "stop").
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node

from lgtc_ros.nodes.common import QOS_DEPTH, SwarmView, mission, now_s, run, stamp_s, twist
from lgtc_ros.safety.swarm import SwarmFilter


class CbfNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_cbf", **kwargs)
        scenario, names = mission(self)
        form = self.declare_parameter("form", "decentralized").value
        radius = self.declare_parameter("sensing_radius", float(scenario.comm_radius)).value
        self.max_age = self.declare_parameter("max_command_age_s", 0.15).value
        self.filter = SwarmFilter(scenario, form, radius)
        self.swarm = SwarmView(self, scenario, names)
        self.frame = self.swarm.frame
        self.v_nom = np.zeros((len(names), 2))
        self.v_stamp = np.full(len(names), -np.inf)
        self.pubs = []
        for i, name in enumerate(names):
            self.create_subscription(TwistStamped, f"/{name}/cmd_vel_nominal",
                                     lambda m, i=i: self._on_nominal(i, m), QOS_DEPTH)
            self.pubs.append(self.create_publisher(TwistStamped, f"/{name}/cmd_vel_safe", QOS_DEPTH))
        self.create_timer(scenario.dt, self._filter)

    def _on_nominal(self, i: int, msg: TwistStamped) -> None:
        self.v_nom[i] = self.frame.velocity_to_arena(np.array([msg.twist.linear.x, msg.twist.linear.y]))
        self.v_stamp[i] = stamp_s(msg.header)

    def _filter(self) -> None:
        pos, flying = self.swarm.located()
        if not flying.any():
            return
        fresh = now_s(self) - self.v_stamp <= self.max_age
        v_nom = np.where(fresh[:, None], self.v_nom, 0.0)  # a silent policy asks to stop, not to repeat
        v_safe = self.filter(v_nom, pos, flying)
        for i in np.flatnonzero(flying):
            self.pubs[i].publish(twist(self, self.frame.velocity_to_metres(v_safe[i])))


def main(args=None) -> None:
    run(CbfNode, args)


if __name__ == "__main__":
    main()
