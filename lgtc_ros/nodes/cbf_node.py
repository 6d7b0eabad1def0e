"""The safety filter between the policies and the drones: every tick, each flying drone's newest
nominal velocity (`{name}/cmd_vel_nominal`, m/s) is projected to a safe one
(`{name}/cmd_vel_safe`) by `safety.swarm.SwarmFilter` (OSQP; per drone or one swarm QP).

Poses and commands arrive late, out of step and, on a busy machine, below 20 Hz. Each drone's
position is therefore only known to within v_max x (its pose's age + `command_latency_s`, the time
until the world or the bridge applies the safe command): the filter keeps pairs that much farther
apart (see `safety.cbf`). A command is applied at most 1/gamma = 2 ticks (the world's and the
bridge's command age limit), which the filter's discrete-time condition covers. Counters, the
per-drone fallbacks and the uncertainty used are published on `lgtc/cbf` (``lgtc_cbf/v1``). A drone
whose newest pose is older than `max_pose_age_s` hovers until a pose comes (`safety.swarm`, `hold`):
steering it by where it was would fly it blind.

Parameters: scenario, names, form (decentralized | centralized), sensing_radius (arena units,
default C), max_command_age_s (older nominal commands count as "stop"), command_latency_s, max_pose_age_s.
"""
from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.nodes.common import (LATEST, RECORD, TAKE_LATEST, declare, guarded, mission, run, stamp_s, to_msg,
                                   twist)
from lgtc_ros.nodes.swarm_view import SwarmView
from lgtc_ros.safety.swarm import SwarmFilter, pose_uncertainty, stale_poses


class CbfNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_cbf", **kwargs)
        scenario, names = mission(self)
        form = declare(self, "form", "decentralized", "one QP per drone, or one for the swarm",
                       choices=("decentralized", "centralized"))
        radius = declare(self, "sensing_radius", float(scenario.comm_radius),
                         "neighbours each drone avoids, arena units", lo=1e-6)
        self.max_age = declare(self, "max_command_age_s", 3 * scenario.dt,
                               "an older nominal command asks the drone to stop, s", lo=0.0)
        self.latency = declare(self, "command_latency_s", scenario.dt, "time from publishing a safe command "
                               "until the world or the bridge applies it, s", lo=0.0)
        self.max_pose_age = declare(self, "max_pose_age_s", 10 * scenario.dt, "a drone whose newest pose is older "
                                    "hovers (zero velocity) until a pose comes, s", lo=scenario.dt)
        self.busy_s = 0.0  # how long the last filter tick took: its commands left that much later
        self.v_max = scenario.v_max
        self.filter = SwarmFilter(scenario, form, radius)
        self.swarm = SwarmView(self, scenario, names)
        self.frame = self.swarm.frame
        self.v_nom = np.zeros((len(names), 2))
        self.v_stamp = np.full(len(names), -np.inf)
        self.pubs = []
        for i, name in enumerate(names):
            self.create_subscription(TwistStamped, f"{name}/cmd_vel_nominal",
                                     guarded(self, lambda m, i=i: self._on_nominal(i, m)), TAKE_LATEST)
            self.pubs.append(self.create_publisher(TwistStamped, f"{name}/cmd_vel_safe", LATEST))
        self.pub_status = self.create_publisher(Float64MultiArray, "lgtc/cbf", RECORD)
        self.create_timer(scenario.dt, guarded(self, self._filter))

    def _on_nominal(self, i: int, msg: TwistStamped) -> None:
        t = stamp_s(msg.header)
        if t >= self.v_stamp[i]:  # out of order: an older command never replaces a newer one
            self.v_nom[i] = self.frame.velocity_to_arena(np.array([msg.twist.linear.x, msg.twist.linear.y]))
            self.v_stamp[i] = t

    def _filter(self) -> None:
        pos, flying = self.swarm.located()
        if not flying.any():
            return
        start = time.perf_counter()
        clock_now = self.get_clock().now()
        now, stamp = clock_now.nanoseconds * 1e-9, clock_now.to_msg()
        fresh = now - self.v_stamp <= self.max_age
        v_nom = np.where(fresh[:, None], self.v_nom, 0.0)  # a silent policy asks to stop, not to repeat
        # the poses' ages now, plus until the world applies the command: this tick's filtering and
        # publishing (the last tick's duration; ~20 ms at N = 50, where leaving it out let a pair
        # in the graph bench come to 0.179 m against 0.2) and the parameter's latency
        uncertainty = pose_uncertainty(now, self.swarm.stamp, flying, self.v_max, self.latency + self.busy_s)
        hold = stale_poses(now, self.swarm.stamp, flying, self.max_pose_age)  # not steered blind
        v_safe = self.filter(v_nom, pos, flying, uncertainty=uncertainty, hold=hold)
        for i in np.flatnonzero(flying):
            self.pubs[i].publish(twist(self, self.frame.velocity_to_metres(v_safe[i]), stamp))
        self.pub_status.publish(to_msg(comm.encode_cbf_status(comm.CbfStatus(
            now, self.filter.stats, self.filter.fallback_counts, uncertainty))))
        self.busy_s = time.perf_counter() - start


def main(args=None) -> None:
    run(CbfNode, "lgtc_cbf", args)


if __name__ == "__main__":
    main()
