"""The emulated radio (all Crazyflies are commanded from one workstation, so range is emulated):
each drone's message reaches `/{receiver}/lgtc/inbox` only for receivers within radius C, one tick
later (+ latency), minus drops and loss bursts: `runtime.radio.Radio` decides all of it.

Parameters: scenario, names, latency_ticks, drop_prob, burst_enter, burst_exit, seed.
A drone without a pose yet, or grounded by the world, neither sends nor receives.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros.nodes.common import QOS_DEPTH, SwarmView, mission, run
from lgtc_ros.runtime.radio import Radio, RadioConfig


class RadioNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_radio", **kwargs)
        scenario, names = mission(self)
        p = {k: self.declare_parameter(k, v).value for k, v in
             {"latency_ticks": 0, "drop_prob": 0.0, "burst_enter": 0.0, "burst_exit": 0.5, "seed": 0}.items()}
        self.radio: Radio = Radio(len(names), RadioConfig(radius=scenario.comm_radius, **p))
        self.swarm = SwarmView(self, scenario, names)
        self.tick = 0
        self.inbox = []
        for i, name in enumerate(names):
            self.create_subscription(Float64MultiArray, f"/{name}/lgtc/message",
                                     lambda m, i=i: self.radio.send(self.tick, i, m), QOS_DEPTH)
            self.inbox.append(self.create_publisher(Float64MultiArray, f"/{name}/lgtc/inbox", 4 * QOS_DEPTH))
        self.create_timer(scenario.dt, self._deliver)

    def _deliver(self) -> None:
        self.tick += 1
        batch = self.radio.deliver_batch(self.tick, *self.swarm.located())
        for receiver, k in zip(*np.nonzero(batch.received)):
            self.inbox[receiver].publish(batch.payloads[k])


def main(args=None) -> None:
    run(RadioNode, args)


if __name__ == "__main__":
    main()
