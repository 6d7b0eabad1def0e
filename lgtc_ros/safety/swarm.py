"""The safety filter for a whole swarm, as the runtime and the ROS `cbf_node` apply it.

`SwarmFilter(scenario, form)` is one callable `(v_nominal [N,2], pos [N,2], active [N], near,
uncertainty) -> v_safe [N,2]` (normalized arena units): "decentralized" runs one per-drone filter per
drone against the neighbours it senses (within `sensing_radius`, default the radio range C; landed
drones are on the ground and not obstacles), "centralized" one QP for the swarm, "off" passes the
nominal commands (landed drones always get zero).

`uncertainty` [N] (arena units, ≥ 0) bounds how far each drone may be from the position passed for
it: v_max × (age of its pose + the latency until the command is applied + the time a command may be
held beyond 1/γ = 2 ticks). Pair (i, j) is then kept D + u_i + u_j apart by the measured positions, which keeps
the true ones D apart (see `lgtc_ros.safety.cbf`). `stats` sums the filters' counters;
`last_fallback` [N] marks the drones that evaded or braked in the last call and `fallback_counts` [N]
counts them per drone since construction (for a node to publish).

`hold` [N] (`stale_poses`): drones whose own pose is too old to steer by get zero velocity (they
hover) and stay obstacles for the others. The clearance covers a pose a few ticks old; a drone
steered for seconds by a pose that no longer comes (a stalled pose stream: after an agent process
was killed, the world's publishing stalled 1-3 s, docs/RELIABILITY.md) would fly blind, evading on
where it was, and the arena rows, which the clearance does not inflate, would not stop it at the
walls. A held drone's pairs stay safe: decentralized, the other drone still takes its half, so
dh/dt >= -(gamma/2) h (a slower barrier, still forward invariant, and gamma/2 dt <= 1 for the sampled
system); centralized, the held drone is pinned to zero in the swarm QP as a landed one is.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Literal

import numpy as np

from lgtc_ros.comm import neighbours_within
from lgtc_ros.safety.cbf import make_centralized_filter, make_decentralized_filter

CBF_MARGIN = 0.03
"""The barrier holds drones at its radius; 3 % above the scenario's safety radius keeps solver
round-off at that boundary from reading as contact in the collision count."""

Form = Literal["decentralized", "centralized", "off"]


class SwarmFilter:
    def __init__(self, scenario, form: Form = "decentralized", sensing_radius: float | None = None,
                 max_neighbours: int = 16):
        if form not in ("decentralized", "centralized", "off"):
            raise ValueError(f"cbf = {form!r}: must be decentralized, centralized or off")
        self.form, self.n = form, scenario.n_agents
        self.sensing_radius = scenario.comm_radius if sensing_radius is None else float(sensing_radius)
        self.radius = scenario.safety_radius * (1.0 + CBF_MARGIN)
        self.log_counts: Counter = Counter()  # shared: the log rate limit applies to the swarm
        if form == "decentralized":
            self.filters = [make_decentralized_filter(self.radius, scenario.v_max, max_neighbours=max_neighbours,
                                                      dt=scenario.dt, agent_index=i, log_counts=self.log_counts)
                            for i in range(self.n)]
        elif form == "centralized":
            self.filters = [make_centralized_filter(self.n, self.radius, scenario.v_max, dt=scenario.dt,
                                                    log_counts=self.log_counts)]
        else:
            self.filters = []
        self.last_fallback = np.zeros(self.n, dtype=bool)
        self.fallback_counts = np.zeros(self.n, dtype=np.int64)
        self.held = 0  # drone-calls held (`hold`) since construction

    def reach(self, clearance: float) -> float:
        """Farthest measured distance at which a pair with radius D + clearance still has a row
        (decentralized): γ/4 (D'²/d − d) > −v_max  ⇔  d < 2v/γ + √((2v/γ)² + D'²). Beyond it the
        speed bound implies the row, so a neighbour farther away cannot change the answer."""
        f = self.filters[0]
        a = 2.0 * f.v_max / f.gamma
        return a + math.hypot(a, self.radius + clearance)  # hypot: no overflow for a huge clearance

    def __call__(self, v_nominal: np.ndarray, pos: np.ndarray, active: np.ndarray,
                 near: np.ndarray | None = None, uncertainty: np.ndarray | None = None,
                 hold: np.ndarray | None = None) -> np.ndarray:
        """`near` [N,N]: neighbours within `sensing_radius`, if the caller already has them;
        `uncertainty` [N] ≥ 0: per-drone position uncertainty (arena units), None = exact;
        `hold` [N] bool: drones given zero that stay obstacles (see the module doc), None = none."""
        active = np.asarray(active, dtype=bool)
        self.last_fallback[:] = False
        steered = active
        if hold is not None:
            hold = np.asarray(hold, dtype=bool)
            if hold.shape != (self.n,):
                raise ValueError(f"hold must be [{self.n}], got {hold.shape}")
            steered = active & ~hold
            self.held += int((active & hold).sum())
        if self.form == "off":
            return v_nominal * steered[:, None]
        if uncertainty is not None:
            uncertainty = np.asarray(uncertainty, dtype=np.float64)
            if uncertainty.shape != (self.n,):
                raise ValueError(f"uncertainty must be [{self.n}], got {uncertainty.shape}")
        if self.form == "centralized":
            f = self.filters[0]
            v_safe = f(v_nominal, pos, steered, uncertainty) * steered[:, None]
            self.last_fallback[:] = f.last_fallback
            self.fallback_counts += self.last_fallback
            return v_safe
        if uncertainty is not None and active.any():
            # With C = 1.0 and D = 0.1 the reach (0.1 + √(0.01 + D'²) at v_max 0.5, γ 10) exceeds the
            # sensing radius only once 2 u ≳ 0.8 units (a pose ~0.8 s old): then the neighbour set
            # grows to the reach, over the poses the caller has (all of them in the cbf node).
            reach = self.reach(2.0 * float(uncertainty[active].max()))
            if reach > self.sensing_radius:  # False for NaN: the filter brakes on it
                near = neighbours_within(pos, reach, active)
        if near is None:
            near = neighbours_within(pos, self.sensing_radius, active)
        v_safe = np.zeros_like(v_nominal)
        for i in np.flatnonzero(steered):
            f, nb = self.filters[i], near[i]
            clearance = None if uncertainty is None else uncertainty[i] + uncertainty[nb]
            v_safe[i] = f(v_nominal[i], pos[i], pos[nb], clearance)
            self.last_fallback[i] = f.fell_back
        self.fallback_counts += self.last_fallback
        return v_safe

    @property
    def stats(self) -> dict[str, int]:
        """CBF counters summed over the swarm's filters (solved, infeasible, fallback, evade, brake, ...),
        and `hold`: drones held for a stale pose, counted per call."""
        return dict(sum((Counter(f.stats.as_dict()) for f in self.filters), Counter()) + Counter(hold=self.held))



def pose_uncertainty(now: float, stamps: np.ndarray, known: np.ndarray, v_max: float, latency_s: float) -> np.ndarray:
    """[N] how far each drone may be from its newest known pose (true at `stamps` [N], s) when a
    safe command computed now takes effect: v_max x (pose age + `latency_s`), arena units; 0 where
    not `known`. The clearance `SwarmFilter` adds, computed here for the CBF node and the runtime's
    model of its timing alike.

    The instantaneous age is used. Holding the worst age of the last 0.25 s or 1 s instead (so the
    clearance never jumps up) was measured in the runtime's asynchrony model, paper_10x4, 10
    episodes, poses up to 1 tick late: return 5.02 (instantaneous), 4.30 (0.25 s), 4.08 (1 s), the
    larger radius keeping drones off shared consumers, for no fewer evasions at 0.25 s.
    """
    age = np.where(known, np.maximum(now - np.asarray(stamps, dtype=np.float64), 0.0), 0.0)
    return np.where(known, v_max * (age + latency_s), 0.0)


def stale_poses(now: float, stamps: np.ndarray, known: np.ndarray, max_age_s: float) -> np.ndarray:
    """[N] the `known` drones whose newest pose (true at `stamps` [N], s) is older than `max_age_s`
    at `now`: the drones `SwarmFilter` should hold (`hold`). For the CBF node and the runtime's model
    of its timing alike."""
    return np.asarray(known, dtype=bool) & (now - np.asarray(stamps, dtype=np.float64) > max_age_s)
