"""What one drone's `agent_node` does, without ROS: wire messages in, one decision per tick, wire
messages out.

The node's callbacks hand their payloads here as they arrive (`on_pose`, `on_demands`,
`on_supply`, `on_neighbour`); its 20 Hz timer calls `tick(now)`. Decisions are the same
`DroneAgent.step` the swarm runtime runs, on the same inputs:

- neighbours: each sender's newest message received since the previous tick (the radio delivers
  last tick's messages; a message that missed this tick is absent, as in `runtime.swarm`), minus
  stale ones (`max_message_age_s`) and the drone's own;
- the pose arrives in metres (`/{name}/pose`) and is mapped to normalized arena units with the
  mission's `ArenaFrame`; the nominal velocity goes back out in m/s;
- a landed drone (supply status `active = 0`) or one still missing its pose, the demand broadcast
  or its supply status decides nothing: `tick` returns a `Skip` naming why, and the node
  publishes nothing (the bridge's watchdog hovers and then lands a drone whose commands stop).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.runtime.drone import DroneAgent, DroneDecision, demand_tensors, stack_messages


@dataclass(frozen=True)
class TickOutput:
    """One decision: nominal velocity [2] in m/s (world frame) and the payloads to publish."""

    v_nominal_m_s: np.ndarray
    message: comm.FloatArray
    """``lgtc_neighbour/v1`` for `/{name}/lgtc/message`."""
    state: comm.FloatArray
    """``lgtc_state/v1`` for `/{name}/lgtc/state`."""
    decision: DroneDecision
    neighbours: int


@dataclass(frozen=True)
class Skip:
    """No decision this tick, and why: "no_pose", "no_demands", "no_supply" or "landed"."""

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
        self._pos: np.ndarray | None = None
        self._demands: comm.DemandBroadcast | None = None
        self._supply: comm.SupplyStatus | None = None
        self._inbox: dict[int, comm.NeighbourMessage] = {}
        self.agent.warmup(self.n_consumers, self.n_resources)

    @property
    def agent_id(self) -> int:
        return self.agent.agent_id

    # ------------------------------------------------------------------ inputs (callbacks)

    def on_pose(self, position_m: np.ndarray) -> None:
        """Own position in metres, world frame (x, y[, z])."""
        p = np.asarray(position_m, dtype=np.float64)
        if p.shape not in ((2,), (3,)) or not np.isfinite(p).all():
            self.stats.record("pose", "bad_value", f"position {p.tolist()}")
            return
        self._pos = self.frame.to_arena(p)

    def on_demands(self, payload, now: float) -> None:
        got = comm.decode_demands(payload, now, self.max_message_age_s, self.n_consumers, self.n_resources,
                                  self.stats)
        if got is not None:
            self._demands = got

    def on_supply(self, payload, now: float) -> None:
        got = comm.decode_supply(payload, now, self.max_message_age_s, self.n_resources, self.stats)
        if got is not None and got.agent_id == self.agent_id:
            self._supply = got

    def on_neighbour(self, payload, now: float) -> None:
        got = comm.decode_neighbour(payload, now, self.max_message_age_s, self.agent.feature_dim,
                                    self.agent.state_dim, self.stats)
        if got is None or got.agent_id == self.agent_id:
            return
        held = self._inbox.get(got.agent_id)
        if held is None or got.stamp >= held.stamp:
            self._inbox[got.agent_id] = got

    def reset(self) -> None:
        """A new mission: forget the recurrent state and every input."""
        self.agent.reset()
        self._pos, self._demands, self._supply = None, None, None
        self._inbox.clear()

    # ------------------------------------------------------------------ the 20 Hz tick

    def tick(self, now: float) -> TickOutput | Skip:
        inbox = [m for m in self._inbox.values() if now - m.stamp <= self.max_message_age_s]
        self._inbox.clear()
        if self._supply is not None and not self._supply.active:
            return Skip("landed")
        for value, reason in ((self._pos, "no_pose"), (self._demands, "no_demands"), (self._supply, "no_supply")):
            if value is None:
                return Skip(reason)
        inbox.sort(key=lambda m: m.agent_id)  # a fixed order: the mean over neighbours is then bit-stable
        f32 = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
        nb_pos, nb_psi, nb_x = stack_messages(inbox, self.agent.feature_dim, self.agent.state_dim)
        decision = self.agent.step(now, f32(self._pos), f32(self._supply.supply), demand_tensors(self._demands),
                                   nb_pos, nb_psi, nb_x)
        message = comm.encode_neighbour(decision.message)
        state = comm.encode_agent_state(self.agent_id, now, decision.x, decision.attention, decision.choice,
                                        self._supply.supply)
        v = self.frame.velocity_to_metres(np.asarray(decision.v_nominal, dtype=np.float64))
        return TickOutput(v, message, state, decision, len(inbox))
