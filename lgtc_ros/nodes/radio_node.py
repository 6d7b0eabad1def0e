"""The emulated radio (all Crazyflies are commanded from one workstation, so range is emulated):
each tick, every drone gets one bundle (`{name}/lgtc/inbox`, ``lgtc_inbox/v1``) of the messages
its neighbours within radius C sent the tick before (+ latency), minus drops and loss bursts:
`runtime.radio.Radio` decides all of it.

Parameters: scenario, names, latency_ticks, drop_prob, burst_enter, burst_exit, seed.

Range is measured between the positions the drones put in their own messages (one tick old at
most): the radio needs no pose or supply subscriptions, 2N fewer callbacks a tick (at N = 50,
half its CPU). A drone that has not sent for `max_silence_ticks` (not started, or landed: a
landed drone decides nothing) neither receives nor is heard.
"""
from __future__ import annotations

import math

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from lgtc_ros import comm
from lgtc_ros.nodes.common import LATEST, TAKE_LATEST, declare, guarded, mission, now_s, run, to_msg
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
        self.max_silence = declare(self, "max_silence_ticks", 3, "a drone silent this many ticks is out of the "
                                   "radio (landed or not started)", lo=1, hi=1000)
        self.radio: Radio[comm.NeighbourMessage] = Radio(len(names), cfg)
        self.pos = np.zeros((len(names), 2))
        self.heard = np.full(len(names), -(10**9))  # radio tick of each drone's last message
        self.g = self.f = None  # message sizes, learnt from the first good message
        self.stats = comm.DecodeStats()
        self.tick = 0
        self.inbox = []
        for i, name in enumerate(names):
            self.create_subscription(Float64MultiArray, f"{name}/lgtc/message",
                                     guarded(self, lambda m, i=i: self._on_message(i, m)), TAKE_LATEST)
            self.inbox.append(self.create_publisher(Float64MultiArray, f"{name}/lgtc/inbox", LATEST))
        self.create_timer(scenario.dt, guarded(self, self._deliver))

    def _on_message(self, sender: int, msg: Float64MultiArray) -> None:
        got = comm.decode_neighbour(msg, now_s(self), math.inf, self.g, self.f, self.stats)
        if got is None or got.agent_id != sender:
            return
        self.g, self.f = got.psi.size, got.x.size
        self.pos[sender], self.heard[sender] = got.position, self.tick
        self.radio.send(self.tick, sender, got)

    def _deliver(self) -> None:
        self.tick += 1
        now = now_s(self)
        batch = self.radio.deliver_batch(self.tick, self.pos, self.tick - self.heard <= self.max_silence)
        for receiver, pub in enumerate(self.inbox):
            pub.publish(to_msg(comm.encode_inbox(now, batch.to(receiver))))


def main(args=None) -> None:
    run(RadioNode, "lgtc_radio", args)


if __name__ == "__main__":
    main()
