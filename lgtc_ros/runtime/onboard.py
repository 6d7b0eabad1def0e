"""One drone's decision, written once: what `agent_node` and `swarm_node` run on ROS, what the
swarm runtime runs for every drone, and what `lgtc replay --policy` re-runs on a recording.

Inputs arrive as they come (`on_pose`, `on_demands`, `on_supply`, `on_inbox` take wire payloads;
`set_demands`, `set_supply`, `receive`, `receive_all`, `receive_rows` take decoded ones, for callers
that decode once for many drones); a timer calls `tick(now)`, which turns the newest inputs into
tensors (`prepare`), runs the policy (`step`: `DroneAgent.run`) and returns the decision
(`DroneAgent.decision`), the nominal velocity and the message to broadcast (`finish`):

- neighbours: each sender's newest message received since the previous tick (the radio delivers
  last tick's messages; a message that missed this tick is absent; equal stamps: the later
  arrival), minus stale ones (`max_message_age_s`) and the drone's own, in sender order (the mean
  over neighbours is then bit-stable). Received messages are held as rows (sender, stamp, body)
  and selected with a few array operations per tick, however many neighbours there are: the
  swarm runtime hands each drone its rows of one block decoded for the whole swarm
  (`receive_rows`), the nodes and the replay hand over decoded messages;
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
from lgtc_ros.runtime.drone import DroneAgent, DroneDecision, PolicyOutput, demand_tensors, neighbour_tensors


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


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """What `OnboardController.prepare` hands to `step`: the policy's float32 tensors (pos [2],
    supply [r], demands (consumer_pos [M,2], demand [M,r], kinds [r]), neighbours (positions [K,2],
    Psi [K,G], x [K,F])), the recurrent state before the step and the supplies [r] (float64, as
    received) the decision is taken with."""

    now: float
    pos: torch.Tensor
    supply: torch.Tensor
    demands: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    neighbours: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    x_before: torch.Tensor
    supplies: np.ndarray


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
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (senders [k], stamps [k], bodies [k, W])
        self._id = self.agent.agent_id
        self._width = 2 + self.agent.feature_dim + self.agent.state_dim  # position, Psi, x
        self.agent.warmup(self.n_consumers, self.n_resources)

    @property
    def agent_id(self) -> int:
        return self.agent.agent_id

    # ------------------------------------------------------------------ inputs off the wire

    def on_pose(self, position_m) -> None:
        """Own position in metres, world frame (x, y[, z])."""
        p = np.asarray(position_m, dtype=np.float64)
        if p.shape not in ((2,), (3,)) or not all(map(math.isfinite, p.tolist())):
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
        self.receive_all((msg,))

    def receive_all(self, msgs) -> None:
        """`receive` for each of `msgs` (one call per tick for callers holding a list)."""
        pairs = [(m, np.ravel(m.body())) for m in msgs if m.agent_id != self._id]
        fit = [(m, b) for m, b in pairs if b.size == self._width]
        if len(fit) < len(pairs):  # sized for another policy: unusable, as a decoder would say
            self.stats.record("neighbour", "bad_length", f"{len(pairs) - len(fit)} bodies not of {self._width}")
        if fit:
            self._rows.append((np.fromiter((m.agent_id for m, _ in fit), dtype=np.int64, count=len(fit)),
                               np.fromiter((m.stamp for m, _ in fit), dtype=np.float64, count=len(fit)),
                               np.concatenate([b for _, b in fit]).reshape(len(fit), self._width)))

    def receive_rows(self, senders: np.ndarray, stamps: np.ndarray, bodies: np.ndarray) -> None:
        """K decoded messages as rows: senders [K] int, stamps [K] s, bodies [K, 2+G+F] (position,
        Psi, x; float32 or float64): what `receive` does for each, without a Python object each."""
        if bodies.ndim != 2 or bodies.shape[1] != self._width or not len(senders) == len(stamps) == len(bodies):
            raise ValueError(f"rows must be senders [K], stamps [K], bodies [K, {self._width}]; got "
                             f"{np.shape(senders)}, {np.shape(stamps)}, {np.shape(bodies)}")
        if len(senders):
            self._rows.append((senders, stamps, bodies))

    def held_stamps(self) -> dict[int, float]:
        """Sender -> stamp of the message each sender's neighbour input would use at the next tick
        (before the age check)."""
        senders, stamps, _ = self._select(self._rows, None)
        return dict(zip(senders.tolist(), stamps.tolist()))

    def _select(self, rows, now: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of the held `rows`, those to use: the drone's own left out, stale ones too (unless `now` is
        None), the newest per sender (equal stamps: the later arrival), in sender order."""
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, self._width), dtype=np.float32)
        if len(rows) == 1:
            senders, stamps, bodies = rows[0]
        else:
            senders, stamps, bodies = (np.concatenate([r[j] for r in rows]) for j in range(3))
        unique = senders.size < 2 or bool((senders[1:] > senders[:-1]).all())  # one per sender, in order
        # the usual tick (no own echo, nothing stale; `now - min` is the largest age) costs two checks
        if (self._id in senders) or (now is not None and not now - stamps.min() <= self.max_message_age_s):
            keep = senders != self._id
            if now is not None:
                keep &= now - stamps <= self.max_message_age_s
            senders, stamps, bodies = senders[keep], stamps[keep], bodies[keep]
        if not unique and senders.size > 1:
            order = np.lexsort((np.arange(senders.size), stamps, senders))  # by sender, stamp, arrival
            last = order[np.append(senders[order][1:] != senders[order][:-1], True)]
            senders, stamps, bodies = senders[last], stamps[last], bodies[last]
        return senders, stamps, bodies

    def reset(self) -> None:
        """A new mission: forget the recurrent state and the neighbour messages (own pose, demands
        and supplies stay: they describe the present, not the past mission)."""
        self.agent.reset()
        self._rows = []

    # ------------------------------------------------------------------ the 20 Hz tick

    def tick(self, now: float) -> TickOutput | Skip:
        """The decision at `now`: `prepare`, `step`, `finish`. A caller deciding for many drones in one
        thread (the swarm runtime) may instead run each of the three for all its drones in turn: the
        same calls on the same inputs, in an order that keeps each one's code and data in cache
        (scale_50x10, 40 neighbours a drone, same process, interleaved, best of 40 ticks: overhead
        beyond the policy 5.9 -> 3.9 ms a tick, the 50 policy calls themselves 14.5 -> 12.7 ms)."""
        inputs = self.prepare(now)
        return inputs if isinstance(inputs, Skip) else self.finish(inputs, self.step(inputs))

    def prepare(self, now: float) -> PolicyInputs | Skip:
        """The newest inputs as the policy's tensors; the held neighbour messages are used up."""
        rows, self._rows = self._rows, []  # each message is used at one tick at most
        if self._supply is not None and not self._supply.active:
            return Skip("landed")
        for value, reason in ((self._pos, "no_pose"), (self._demands, "no_demands"), (self._supply, "no_supply")):
            if value is None:
                return Skip(reason)
        _, _, bodies = self._select(rows, now)
        return PolicyInputs(now, self._pos, self._supply_t, demand_tensors(self._demands),
                            neighbour_tensors(bodies, self.agent.feature_dim), self.agent.x, self._supply.supply)

    def step(self, inputs: PolicyInputs) -> PolicyOutput:
        """The policy call on `prepare`'s inputs (advances the recurrent state): `DroneAgent.run`."""
        return self.agent.run(inputs.pos, inputs.supply, inputs.demands, *inputs.neighbours)

    def finish(self, inputs: PolicyInputs, out: PolicyOutput) -> TickOutput | Skip:
        """The decision (`DroneAgent.decision`), its command and its message, or a Skip if it is
        not finite."""
        decision = self.agent.decision(inputs.now, inputs.pos, out)
        if not math.isfinite(float(decision.v_nominal.sum()) + float(decision.x.sum())):
            # inputs that decode fine can still overflow float32 (a position of 1e20 m): no NaN
            # command, and the recurrent state of this tick is not kept (it would poison every next one)
            self.agent.x = inputs.x_before
            self.stats.record("decision", "non_finite", "policy output")
            return Skip("non_finite")
        v = self.frame.velocity_to_metres(decision.v_nominal)
        return TickOutput(v, comm.encode_neighbour(decision.message), decision, len(inputs.neighbours[0]),
                          inputs.supplies)
