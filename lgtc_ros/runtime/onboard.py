"""One drone's decision, written once: what `agent_node` and `swarm_node` run on ROS, what the
swarm runtime runs for every drone, and what `lgtc replay --policy` re-runs on a recording.

Inputs arrive as they come (`on_pose`, `on_demands`, `on_supply`, `on_inbox` take wire payloads;
`set_demands`, `set_supply`, `receive` take decoded ones, for callers that decode once for many
drones); a timer calls `tick(now)`, which turns the newest inputs into tensors, runs the policy
step (`DroneAgent.step`) and returns the nominal velocity and the message to broadcast:

- neighbours: each sender's newest message received since the previous tick (the radio delivers
  last tick's messages; a message that missed this tick is absent), minus stale ones
  (`max_message_age_s`) and the drone's own, in sender order (the mean over neighbours is then
  bit-stable);
- the pose arrives in metres (world frame) and is mapped to arena units by the mission's
  `ArenaFrame`; the nominal velocity goes back out in m/s;
- a landed drone (supply status `active = 0`), or one still missing its pose, the demand
  broadcast or its supply status, decides nothing: `tick` returns a `Skip` naming why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.runtime.drone import DroneAgent, DroneDecision, demand_tensors, stack_messages


@dataclass(frozen=True)
class TickOutput:
    """One decision: nominal velocity [2] in m/s (world frame) and what to publish."""

    v_nominal_m_s: np.ndarray
    message: comm.FloatArray
    """``lgtc_neighbour/v1`` for `/{name}/lgtc/message`."""
    decision: DroneDecision
    neighbours: int
    supply: np.ndarray
    """The supplies [r] the decision was taken with (recorded in the state)."""

    def state(self) -> comm.FloatArray:
        """``lgtc_state/v1`` for `/{name}/lgtc/state` (built on demand: the runtime records
        decoded states and never needs the payload)."""
        d = self.decision
        return comm.encode_agent_state(d.message.agent_id, d.message.stamp, d.x, d.attention, d.choice, self.supply)


@dataclass(frozen=True)
class Skip:
    """No decision this tick, and why: "no_pose", "no_demands", "no_supply", "landed" or
    "non_finite" (the policy's output overflowed: inputs far out of range)."""

    reason: str


@dataclass
class OnboardController:
    agent: DroneAgent
    frame: ArenaFrame
    n_consumers: int
    n_resources: int
    max_message_age_s: float = 0.5
    stats: comm.DecodeStats = field(default_factory=comm.DecodeStats)

    def __post_init__(self) -> None:
        self._pos: torch.Tensor | None = None
        self._demands: comm.DemandBroadcast | None = None
        self._supply: comm.SupplyStatus | None = None
        self._supply_t: torch.Tensor | None = None
        self._inbox: dict[int, comm.NeighbourMessage] = {}
        self._id = self.agent.agent_id
        self.agent.warmup(self.n_consumers, self.n_resources)

    @property
    def agent_id(self) -> int:
        return self.agent.agent_id

    # ------------------------------------------------------------------ inputs off the wire

    def on_pose(self, position_m) -> None:
        """Own position in metres, world frame (x, y[, z])."""
        p = np.asarray(position_m, dtype=np.float64)
        if p.shape not in ((2,), (3,)) or not np.isfinite(p).all():
            self.stats.record("pose", "bad_value", f"position {p.tolist()}")
            return
        self._pos = torch.from_numpy(self.frame.to_arena(p).astype(np.float32))

    def on_demands(self, payload, now: float) -> None:
        got = comm.decode_demands(payload, now, self.max_message_age_s, self.n_consumers, self.n_resources,
                                  self.stats)
        if got is not None:
            self.set_demands(got)

    def on_supply(self, payload, now: float) -> None:
        got = comm.decode_supply(payload, now, self.max_message_age_s, self.n_resources, self.stats)
        if got is not None:
            self.set_supply(got)

    def on_inbox(self, payload, now: float) -> None:
        """The radio's bundle for this drone (``lgtc_inbox/v1``)."""
        got = comm.decode_inbox(payload, now, self.max_message_age_s, self.agent.feature_dim,
                                self.agent.state_dim, self.stats)
        for msg in got or ():
            self.receive(msg)

    # ------------------------------------------------------------------ decoded inputs

    def set_demands(self, demands: comm.DemandBroadcast) -> None:
        self._demands = demands

    def set_supply(self, supply: comm.SupplyStatus) -> None:
        """Another drone's status is ignored (a mis-wired topic must not steer this drone)."""
        if supply.agent_id == self.agent_id:
            self._supply = supply
            self._supply_t = torch.from_numpy(np.asarray(supply.supply, dtype=np.float32))

    def receive(self, msg: comm.NeighbourMessage) -> None:
        """One neighbour message; the newest per sender is kept until the next tick."""
        sender = msg.agent_id
        if sender != self._id:
            held = self._inbox.get(sender)
            if held is None or msg.stamp >= held.stamp:
                self._inbox[sender] = msg

    def receive_all(self, msgs) -> None:
        """`receive` for each of `msgs` (one call per tick for callers holding a list)."""
        inbox, own = self._inbox, self._id
        if not inbox:  # the usual case: a fresh tick, one message per sender, set in one go
            others = [m for m in msgs if m.agent_id != own]
            inbox.update((m.agent_id, m) for m in others)
            if len(inbox) == len(others):
                return
            inbox.clear()  # a sender appeared twice: keep its newest, as `receive` does
        for m in msgs:
            self.receive(m)

    def reset(self) -> None:
        """A new mission: forget the recurrent state and the neighbour messages (own pose, demands
        and supplies stay: they describe the present, not the past mission)."""
        self.agent.reset()
        self._inbox.clear()

    # ------------------------------------------------------------------ the 20 Hz tick

    def tick(self, now: float) -> TickOutput | Skip:
        inbox = [m for _, m in sorted(self._inbox.items()) if now - m.stamp <= self.max_message_age_s]
        self._inbox.clear()
        if self._supply is not None and not self._supply.active:
            return Skip("landed")
        for value, reason in ((self._pos, "no_pose"), (self._demands, "no_demands"), (self._supply, "no_supply")):
            if value is None:
                return Skip(reason)
        nb_pos, nb_psi, nb_x = stack_messages(inbox, self.agent.feature_dim, self.agent.state_dim)
        x_before = self.agent.x
        decision = self.agent.step(now, self._pos, self._supply_t, demand_tensors(self._demands),
                                   nb_pos, nb_psi, nb_x)
        if not math.isfinite(float(decision.v_nominal.sum()) + float(decision.x.sum())):
            # inputs that decode fine can still overflow float32 (a position of 1e20 m): no NaN
            # command, and the recurrent state of this tick is not kept (it would poison every next one)
            self.agent.x = x_before
            self.stats.record("decision", "non_finite", "policy output")
            return Skip("non_finite")
        v = self.frame.velocity_to_metres(np.asarray(decision.v_nominal, dtype=np.float64))
        return TickOutput(v, comm.encode_neighbour(decision.message), decision, len(inbox), self._supply.supply)
