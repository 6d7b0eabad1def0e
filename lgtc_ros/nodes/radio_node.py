"""The emulated radio (all Crazyflies are commanded from one workstation, so range is emulated):
each tick, every drone gets one bundle (`{name}/lgtc/inbox`, ``lgtc_inbox/v1``) of the messages
its neighbours within radius C sent the tick before (+ latency), minus drops and loss bursts:
`runtime.radio.Radio` decides all of it.

Parameters: scenario, names, latency_ticks, drop_prob, burst_enter, burst_exit, seed.
A drone without a pose yet, or grounded by the world, neither sends nor receives.
"""
from __future__ import annotations

import math

from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.nodes.common import LATEST, declare, guarded, mission, now_s, run, to_msg
from lgtc_ros.nodes.swarm_view import SwarmView
from lgtc_ros.runtime.radio import Radio, RadioConfig


class RadioNode(Node):
    def __init__(self, **kwargs) -> None:  # kwargs: rclpy Node options (parameter_overrides, ...)
        super().__init__("lgtc_radio", **kwargs)
        scenario, names = mission(self)
        cfg = RadioConfig(
            radius=scenario.comm_radius,
            latency_ticks=declare(self, "latency_ticks", 0, "extra ticks of delay beyond one", lo=0, hi=1000),
            drop_prob=declare(self, "drop_prob", 0.0, "independent loss per message and receiver", lo=0.0, hi=1.0),
            burst_enter=declare(self, "burst_enter", 0.0, "per link and tick: a loss burst starts", lo=0.0, hi=1.0),
            burst_exit=declare(self, "burst_exit", 0.5, "per link and tick: a loss burst ends", lo=0.0, hi=1.0),
            seed=declare(self, "seed", 0, "loss random seed", lo=0))
        self.radio: Radio[comm.NeighbourMessage] = Radio(len(names), cfg)
        self.swarm = SwarmView(self, scenario, names)
        self.g = self.f = None  # message sizes, learnt from the first good message
        self.stats = comm.DecodeStats()
        self.tick = 0
        self.inbox = []
        for i, name in enumerate(names):
            self.create_subscription(Float64MultiArray, f"{name}/lgtc/message",
                                     guarded(self, lambda m, i=i: self._on_message(i, m)), LATEST)
            self.inbox.append(self.create_publisher(Float64MultiArray, f"{name}/lgtc/inbox", LATEST))
        self.create_timer(scenario.dt, guarded(self, self._deliver))

    def _on_message(self, sender: int, msg: Float64MultiArray) -> None:
        got = comm.decode_neighbour(msg, now_s(self), math.inf, self.g, self.f, self.stats)
        if got is None or got.agent_id != sender:
            return
        self.g, self.f = got.psi.size, got.x.size
        self.radio.send(self.tick, sender, got)

    def _deliver(self) -> None:
        self.tick += 1
        now = now_s(self)
        batch = self.radio.deliver_batch(self.tick, *self.swarm.located())
        for receiver, pub in enumerate(self.inbox):
            pub.publish(to_msg(comm.encode_inbox(now, batch.to(receiver))))


def main(args=None) -> None:
    run(RadioNode, "lgtc_radio", args)


if __name__ == "__main__":
    main()
