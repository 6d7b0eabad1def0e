"""The safety filter for a whole swarm, as the runtime and the ROS `cbf_node` apply it.

`SwarmFilter(scenario, form)` is one callable `(v_nominal [N,2], pos [N,2], active [N], near) ->
v_safe [N,2]` (normalized arena units): "decentralized" runs one per-drone filter per drone
against the neighbours it senses (within `sensing_radius`, default the radio range C; landed
drones are on the ground and not obstacles), "centralized" one QP for the swarm, "off" passes the
nominal commands (landed drones always get zero).
"""
from __future__ import annotations

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
        radius = scenario.safety_radius * (1.0 + CBF_MARGIN)
        if form == "decentralized":
            self.filters = [make_decentralized_filter(radius, scenario.v_max, max_neighbours=max_neighbours,
                                                      dt=scenario.dt) for _ in range(self.n)]
        elif form == "centralized":
            self.filters = [make_centralized_filter(self.n, radius, scenario.v_max, dt=scenario.dt)]
        else:
            self.filters = []

    def __call__(self, v_nominal: np.ndarray, pos: np.ndarray, active: np.ndarray,
                 near: np.ndarray | None = None) -> np.ndarray:
        """`near` [N,N]: neighbours within `sensing_radius`, if the caller already has them."""
        active = np.asarray(active, dtype=bool)
        if self.form == "off":
            return v_nominal * active[:, None]
        if self.form == "centralized":
            return self.filters[0](v_nominal, pos, active) * active[:, None]
        if near is None:
            near = neighbours_within(pos, self.sensing_radius, active)
        v_safe = np.zeros_like(v_nominal)
        for i in np.flatnonzero(active):
            v_safe[i] = self.filters[i](v_nominal[i], pos[i], pos[near[i]])
        return v_safe

    @property
    def stats(self) -> dict[str, int]:
        """CBF counters summed over the swarm's filters (solved, infeasible, fallback, ...)."""
        return dict(sum((Counter(f.stats.as_dict()) for f in self.filters), Counter()))
