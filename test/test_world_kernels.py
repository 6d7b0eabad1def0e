"""The fused distance kernels of `World.step` against the rules they fuse: the neighbour graph
(`observation.neighbour_mask`), the collision sums (`rewards.close_pairs`) and consumer
membership (`resources.membership`), on random teams, partial and several env blocks, landed
agents, and the boundary cases (exactly at C or R, two agents on one spot, equidistant consumers)."""
from __future__ import annotations

import pytest
import torch

from lgtc_ros.world import kernels
from lgtc_ros.world import resources as res


def random_team(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, n, 2, generator=g) * 2 - 1
    active = torch.rand(b, n, generator=g) > 0.2
    return pos, active


@pytest.mark.parametrize("b, n", [(1, 1), (3, 2), (7, 10), (kernels.WIDTH + 5, 10), (2 * kernels.WIDTH, 13)])
def test_pairwise_equals_the_rules(b, n):
    pos, active = random_team(b, n, seed=b * 100 + n)
    pos[0, -1] = pos[0, 0]                                          # two agents on one spot (when n > 1)
    dist, nb, close = kernels.pairwise(pos, active, 0.6, 0.3)
    want_dist, want_nb, want_close = kernels.pairwise_torch(pos, active, 0.6, 0.3)
    assert dist.shape == nb.shape == (b, n, n) and close.shape == (b, n) and nb.dtype == torch.bool
    torch.testing.assert_close(dist, want_dist, rtol=0, atol=3e-7)
    assert torch.equal(nb, want_nb)
    torch.testing.assert_close(close, want_close, rtol=1e-6, atol=1e-7)
    assert (close[~active] == 0).all() and not nb[~active].any() and not nb.transpose(1, 2)[~active].any()


def test_pairwise_boundaries():
    pos = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.0, 0.0], [-0.75, 0.0]]])   # 0.5 and 0.75 are exact in fp32
    active = torch.ones(1, 4, dtype=torch.bool)
    dist, nb, close = kernels.pairwise(pos, active, 0.5, 0.25)
    assert nb[0, 0, 1] and nb[0, 1, 0]                              # exactly at C: a neighbour (<=)
    assert nb[0, 0, 2] and not nb[0, 0, 0]                          # same spot: a neighbour; itself: never
    assert not nb[0, 0, 3]
    assert close[0, 0] == pytest.approx(0.0625) and close[0, 1] == 0.0    # only the agent on the spot is close
    assert dist[0, 0, 1] == 0.5 and dist[0, 0, 2] == 0.0


def test_membership_equals_the_rule_with_ties_boundaries_and_landed_agents():
    b, n, m = kernels.WIDTH + 3, 9, 4
    g = torch.Generator().manual_seed(5)
    pos = torch.rand(b, n, 2, generator=g) * 2 - 1
    cpos = torch.rand(b, m, 2, generator=g) * 2 - 1
    radii = 0.2 + 0.5 * torch.rand(b, m, generator=g)               # demand-scaled radii differ per consumer
    active = torch.rand(b, n, generator=g) > 0.2
    # agent 1 of env 0 (at the origin) is equidistant from consumers 1 and 3
    cpos[0] = torch.tensor([[-0.9, -0.9], [0.0, 0.5], [0.9, 0.9], [0.0, -0.5]])
    pos[:, 0] = cpos[:, 2]                                           # on a consumer
    pos[0, 1] = torch.tensor([0.0, 0.0])
    radii[0] = 0.5                                                    # ... exactly at both radii
    active[0, 1] = True
    at = kernels.membership(pos, cpos, radii, active)
    assert at.dtype == torch.long and torch.equal(at, res.membership(pos, cpos, radii, active))
    assert at[0, 1] == 1                                             # the tie goes to the lower index
    assert (at[~active] == m).all() and (at[active[:, 0], 0] == 2).all()
