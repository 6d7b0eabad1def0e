"""The CBF safety filter for a batched `World`: every env through a `SwarmFilter` of its own.

What the per-drone runtime and the ROS cbf node do to one swarm, done to each env of the batched
evaluator, so that a policy (the expert, a learned one) can be measured as it flies behind the
filter (issue 12: the expert through the same CBF is the reference at N = 100).
"""
from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lgtc_ros.world import World, clip_speed

SAFETY = ("decentralized", "centralized")
"""The `safety` forms: those of `SwarmFilter` that filter."""


class EnvFilters:
    """`(world, v [B,N,2]) -> v_safe [B,N,2]`: every env of a batched `World` through a
    `SwarmFilter` of its own (`form`), as the runtime filters its one swarm (exact poses, sensing
    radius C). The filters are kept from call to call (and episode to episode: warm starts) and
    rebuilt only when the batch or the scenario changes."""

    def __init__(self, form: Literal["decentralized", "centralized"] = "decentralized"):
        if form not in SAFETY:
            raise ValueError(f"form = {form!r}: must be decentralized or centralized")
        self.form = form
        self.filters: list = []
        self._scenario = None

    def __call__(self, world: World, v: Tensor) -> Tensor:
        from lgtc_ros.safety.swarm import SwarmFilter

        s = world.scenario
        if len(self.filters) != world.n_envs or self._scenario is not s:  # radii, C and N come from it
            self.filters = [SwarmFilter(s, self.form) for _ in range(world.n_envs)]
            self._scenario = s
        v_nom = v.double().numpy()
        pos = world.pos.double().numpy()
        active = world.active.numpy()
        safe = np.stack([f(v_nom[e], pos[e], active[e]) for e, f in enumerate(self.filters)])
        return torch.as_tensor(safe, dtype=v.dtype)

    @property
    def stats(self) -> dict[str, int]:
        """The filters' counters (`SwarmFilter.stats`) summed over the envs."""
        return dict(sum((Counter(f.stats) for f in self.filters), Counter()))


class CbfFiltered:
    """Any batched policy (a learned one, say) with its commands, clipped to v_max, through
    `EnvFilters(form)`: the policy as the drones fly it behind the cbf node, in the batched evaluator."""

    def __init__(self, policy, form: Literal["decentralized", "centralized"] = "decentralized"):
        self.policy, self.cbf = policy, EnvFilters(form)

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, world: World) -> Tensor:
        v = clip_speed(self.policy(world), world.scenario.v_max) * world.active[..., None]
        return self.cbf(world, v)
