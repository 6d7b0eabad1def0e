"""The emulated radio (all Crazyflies are commanded from one workstation, so range is emulated):
each drone's message reaches `/{receiver}/lgtc/inbox` only for receivers within radius C, one tick
later (+ latency), minus drops and loss bursts: `runtime.radio.Radio` decides all of it.

Parameters: scenario, names, latency_ticks, drop_prob, burst_enter, burst_exit, seed.
A drone without a pose yet, or grounded by the world, neither sends nor receives.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.bridge import ArenaFrame
from lgtc_ros.nodes.common import QOS_DEPTH, mission, now_s, run
from lgtc_ros.runtime.radio import Radio, RadioConfig


class RadioNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_radio", **kwargs)
        scenario, names = mission(self)
        p = {k: self.declare_parameter(k, v).value for k, v in
             {"latency_ticks": 0, "drop_prob": 0.0, "burst_enter": 0.0, "burst_exit": 0.5, "seed": 0}.items()}
        self.radio: Radio = Radio(len(names), RadioConfig(radius=scenario.comm_radius, **p))
        self.frame, self.n, self.r = ArenaFrame.from_scenario(scenario), len(names), scenario.n_resources
        self.pos = np.full((self.n, 2), np.nan)
        self.active = np.ones(self.n, dtype=bool)
        self.tick = 0
        self.stats = comm.DecodeStats()
        self.inbox = []
        for i, name in enumerate(names):
            self.create_subscription(PoseStamped, f"/{name}/pose", lambda m, i=i: self._on_pose(i, m), QOS_DEPTH)
            self.create_subscription(Float64MultiArray, f"/{name}/lgtc/supply",
                                     lambda m, i=i: self._on_supply(i, m), QOS_DEPTH)
            self.create_subscription(Float64MultiArray, f"/{name}/lgtc/message",
                                     lambda m, i=i: self.radio.send(self.tick, i, m), QOS_DEPTH)
            self.inbox.append(self.create_publisher(Float64MultiArray, f"/{name}/lgtc/inbox", 4 * QOS_DEPTH))
        self.create_timer(scenario.dt, self._deliver)

    def _on_pose(self, i: int, msg: PoseStamped) -> None:
        self.pos[i] = self.frame.to_arena(np.array([msg.pose.position.x, msg.pose.position.y]))

    def _on_supply(self, i: int, msg: Float64MultiArray) -> None:
        got = comm.decode_supply(msg, now_s(self), 0.5, self.r, self.stats)
        if got is not None:
            self.active[i] = got.active

    def _deliver(self) -> None:
        self.tick += 1
        known = np.isfinite(self.pos).all(1) & self.active
        batch = self.radio.deliver_batch(self.tick, np.where(known[:, None], self.pos, 0.0), known)
        for receiver, k in zip(*np.nonzero(batch.received)):
            self.inbox[receiver].publish(batch.payloads[k])


def main(args=None) -> None:
    run(RadioNode, args)


if __name__ == "__main__":
    main()
