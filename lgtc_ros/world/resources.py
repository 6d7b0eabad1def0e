"""Resource bookkeeping: who is at which consumer, instantaneous release, persistent coverage.

Shapes: B envs, N agents, M consumers, r resource types. All functions are pure and batched.

Rules (DESIGN §2):
- An agent interacts with at most one consumer per step: the nearest one whose interaction
  radius R_m contains it (overlapping areas would otherwise let it release twice).
- Instantaneous: an agent inside R_m releases in full: per (m, l) the released total is
  min(incoming supply, demand) and is shared among the agents there in proportion to their supply
  (fair and order-free, so the batched and the per-env simulators agree exactly).
- Persistent: covered while the agent stays inside R_m. The coverage of (m, l) is
  min(need, supply of the agents inside); the remaining demand is need - coverage. Supplies may
  discharge at a per-type rate (a battery), independently of covering.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def consumer_radii(base_radius: float, demand_scale: float, demand: Tensor) -> Tensor:
    """R_m, optionally growing with the consumer's total demand (Fig. 2). demand [B,M,r] -> [B,M]."""
    return base_radius * (1.0 + demand_scale * demand.sum(-1))


def membership(pos: Tensor, consumer_pos: Tensor, radii: Tensor, active: Tensor) -> Tensor:
    """at [B,N] long: the nearest consumer whose radius contains the active agent, M for none.

    pos [B,N,2], consumer_pos [B,M,2], radii [B,M], active [B,N] bool. An index instead of a
    one-hot matrix: the sums over agents below become scatter/gather instead of batched matmuls.
    """
    dist = torch.cdist(pos, consumer_pos, compute_mode="donot_use_mm_for_euclid_dist")  # [B,N,M]
    masked = dist.masked_fill(dist > radii[:, None, :], torch.inf)
    nearest, idx = masked.min(-1)
    m = consumer_pos.shape[1]
    return torch.where(torch.isfinite(nearest) & active, idx, m)


def one_hot(at: Tensor, m: int) -> Tensor:
    """[B,N,M] bool from `at` (the 'none' index M maps to all False)."""
    return torch.nn.functional.one_hot(at, m + 1)[..., :m].bool()


def per_consumer(values: Tensor, at: Tensor, m: int) -> Tensor:
    """Sum agents' values [B,N,r] into their consumers: [B,M,r]."""
    b, _, r = values.shape
    out = values.new_zeros(b, m + 1, r)
    return out.scatter_add_(1, at[..., None].expand(-1, -1, r), values)[:, :m]


def at_consumer(values: Tensor, at: Tensor) -> Tensor:
    """Each agent reads its consumer's row of values [B,M,r] -> [B,N,r] (zeros for none)."""
    padded = torch.cat([values, values.new_zeros(values.shape[0], 1, values.shape[2])], 1)
    return torch.gather(padded, 1, at[..., None].expand(-1, -1, values.shape[2]))


def release_instantaneous(
    supply: Tensor, need: Tensor, at: Tensor, instantaneous: Tensor
) -> tuple[Tensor, Tensor]:
    """Release instantaneous resources at the consumers the agents are in.

    supply [B,N,r], need [B,M,r] (remaining demand), at [B,N] (from `membership`),
    instantaneous [r] bool. Returns (released by each agent [B,N,r], released to each consumer [B,M,r]).
    """
    carried = supply * instantaneous
    incoming = per_consumer(carried, at, need.shape[1])
    delivered = torch.minimum(incoming, need) * instantaneous
    fraction = torch.where(incoming > 0, delivered / incoming.clamp_min(1e-12), 0.0)
    return carried * at_consumer(fraction, at), delivered


def persistent_coverage(
    supply: Tensor, need: Tensor, at: Tensor, persistent: Tensor
) -> tuple[Tensor, Tensor]:
    """Coverage of persistent demands by the agents present.

    Returns (covered [B,M,r], covering [B,N] bool: the agent carries a persistent type its
    consumer still needs).
    """
    carried = supply * persistent
    covered = torch.minimum(per_consumer(carried, at, need.shape[1]), need) * persistent
    needed_here = at_consumer((need > 0).to(supply.dtype), at)
    covering = ((carried > 0) & (needed_here > 0)).any(-1)
    return covered, covering


def attended(supply: Tensor, need: Tensor, at: Tensor) -> Tensor:
    """[B,M] bool: some agent inside R_m carries a type that m still needs (it is releasing)."""
    useful = per_consumer((supply > 0).to(supply.dtype), at, need.shape[1])
    return ((useful > 0) & (need > 0)).any(-1)


def remaining_demand(need: Tensor, covered: Tensor, persistent: Tensor) -> Tensor:
    """Demand still open [B,M,r]: instantaneous need as is, persistent need minus coverage."""
    return torch.where(persistent, need - covered, need).clamp_min(0.0)


def discharge(supply: Tensor, rates: Tensor, active: Tensor, dt: float) -> Tensor:
    """Persistent supplies drain at `rates` [r] units/s while the agent is active (flying)."""
    drain = rates * dt * active[..., None].to(supply.dtype)
    return (supply - drain).clamp_min(0.0)


def satisfiable_demand(supply: np.ndarray, demand: np.ndarray, persistent: np.ndarray) -> float:
    """The most demand any team behaviour could satisfy at once (for the "% satisfied" metric).

    supply [N,r], demand [M,r], persistent [r] bool (numpy, one env).
    Instantaneous type l: min(total supply, total demand), since an agent may visit several
    consumers. Persistent types: an agent covers one consumer at a time, so the best coverage is a
    small MILP (each agent picks at most one consumer; coverage of (m,l) <= need and <= the supply
    there), solved exactly with HiGHS through scipy.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    inst = ~persistent
    total = float(np.minimum(supply[:, inst].sum(0), demand[:, inst].sum(0)).sum())
    carriers = np.flatnonzero(supply[:, persistent].sum(1) > 0)
    p_types = np.flatnonzero(persistent)
    if carriers.size == 0 or p_types.size == 0 or demand[:, persistent].sum() <= 0:
        return total
    n, m, r = carriers.size, demand.shape[0], p_types.size
    # variables: a[n, m] (binary) then c[m, r] (continuous coverage)
    n_a, n_c = n * m, m * r
    cost = np.concatenate([np.zeros(n_a), -np.ones(n_c)])
    rows, lower, upper = [], [], []
    for i in range(n):  # each carrier at one consumer at most
        row = np.zeros(n_a + n_c)
        row[i * m:(i + 1) * m] = 1
        rows.append(row), lower.append(0), upper.append(1)
    for mm in range(m):  # coverage <= supply present
        for k, l in enumerate(p_types):
            row = np.zeros(n_a + n_c)
            row[[i * m + mm for i in range(n)]] = -supply[carriers, l]
            row[n_a + mm * r + k] = 1
            rows.append(row), lower.append(-np.inf), upper.append(0)
    need = demand[:, p_types].reshape(-1)
    bounds = Bounds(np.zeros(n_a + n_c), np.concatenate([np.ones(n_a), need]))
    integrality = np.concatenate([np.ones(n_a), np.zeros(n_c)])
    res = milp(cost, constraints=LinearConstraint(np.array(rows), lower, upper),
               integrality=integrality, bounds=bounds, options={"time_limit": 5.0})
    if res.x is None:  # HiGHS always finds the all-zero point; keep a safe bound regardless
        return total + float(np.minimum(supply[:, persistent].sum(0), demand[:, persistent].sum(0)).sum())
    return total + float(-res.fun)
