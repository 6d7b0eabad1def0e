"""What each agent observes (paper §II), shared by training, evaluation, the runtime and the nodes.

Agent i sees its own position and supplies, every consumer's position, open demand and the kind
of each resource type; plus messages from neighbours within the communication radius C.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Observation:
    """Batched observations. B envs, N agents, M consumers, r resource types; arena units."""

    pos: Tensor            # [B,N,2] own position
    supply: Tensor         # [B,N,r] own supplies
    consumer_pos: Tensor   # [B,M,2]
    demand: Tensor         # [B,M,r] open demand (instantaneous remaining; persistent uncovered)
    kinds: Tensor          # [r] 1.0 persistent, 0.0 instantaneous
    neighbours: Tensor     # [B,N,N] bool, j within C of i, j != i, both active
    active: Tensor         # [B,N] bool

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, N, M, r)."""
        b, n, r = self.supply.shape
        return b, n, self.consumer_pos.shape[1], r

    def flat(self) -> Tensor:
        """Per-agent flat vector [B,N,D], D = 2 + 2r + 3M... (layout: `flat_layout`)."""
        b, n, m, r = self.shape
        shared = torch.cat([self.consumer_pos.reshape(b, m * 2), self.demand.reshape(b, m * r)], -1)
        kinds = self.kinds.expand(b, n, r)
        return torch.cat([self.pos, self.supply, kinds, shared[:, None, :].expand(b, n, -1)], -1)

    def agent(self, env: int, agent: int) -> dict[str, Tensor]:
        """One agent's local view (no batch dims), as a drone would assemble it."""
        return {
            "pos": self.pos[env, agent],
            "supply": self.supply[env, agent],
            "consumer_pos": self.consumer_pos[env],
            "demand": self.demand[env],
            "kinds": self.kinds,
        }


def flat_layout(n_consumers: int, n_resources: int) -> list[tuple[str, int]]:
    """Names and widths of the blocks of `Observation.flat()`, in order."""
    m, r = n_consumers, n_resources
    return [("pos", 2), ("supply", r), ("kinds", r), ("consumer_pos", 2 * m), ("demand", m * r)]


def neighbour_mask(pos: Tensor, active: Tensor, radius: float, dist: Tensor | None = None) -> Tensor:
    """[B,N,N] bool: |p_i - p_j| <= radius, i != j, both agents active. pos [B,N,2].

    `dist` [B,N,N] may pass precomputed pairwise distances.
    """
    dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist") if dist is None else dist
    n = pos.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=pos.device)
    both = active[:, :, None] & active[:, None, :]
    return (dist <= radius) & ~eye & both
