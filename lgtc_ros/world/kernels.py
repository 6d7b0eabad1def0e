"""Fused CPU kernels (numba) for the two distance blocks of `World.step`.

At B = 1024, N = 10 the eager step spent over a third of its time here: `cdist` over
[B,N,N] and [B,N,M], then a compare, a diagonal fill, the collision term's passes and a min
over M, each a separate pass over memory in ops that torch does not vectorize well on tiny
trailing dims. One loop each computes the same things in one pass:

- `pairwise`: the distances |p_i - p_j|, the neighbour graph (`observation.neighbour_mask`:
  within C, not itself, both active) and, per agent, the sum over its neighbours of
  max(d_c^2 - d^2, 0) (the collision term of `rewards.hybrid_reward` before its gain);
- `membership`: each agent's consumer (`resources.membership`: the nearest consumer whose
  radius it is inside, M for none, inactive agents at none).

The rules stay where they are written (`observation`, `rewards`, `resources`); these are their
fused forms, and test/test_world_kernels.py holds them equal to those functions (`pairwise_torch`,
`resources.membership`, which also serve tensors off the CPU).
Envs are processed in blocks of `WIDTH`, transposed so the inner loop runs over envs and
vectorizes; `cache=True` keeps the compiled code beside this file (the first use in a fresh
checkout compiles both for ~2 s; later processes load them in ~1 s, numba's import included).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lgtc_ros.world import resources as res
from lgtc_ros.world.observation import neighbour_mask
from lgtc_ros.world.rewards import close_pairs

WIDTH = 64
"""Envs per block: the block's transposed copies stay in L1/L2."""


def _pairwise_loops(pos, active, radius, d2c, dist, nb, close):
    n_envs, n = pos.shape[0], pos.shape[1]
    zero = np.float32(0.0)
    xs = np.empty((n, WIDTH), np.float32)
    ys = np.empty((n, WIDTH), np.float32)
    av = np.empty((n, WIDTH), np.bool_)
    dt = np.empty((n, n, WIDTH), np.float32)
    nt = np.empty((n, n, WIDTH), np.bool_)
    ct = np.empty((n, WIDTH), np.float32)
    for b0 in range(0, n_envs, WIDTH):
        w = min(WIDTH, n_envs - b0)
        for i in range(n):
            for k in range(w):
                xs[i, k] = pos[b0 + k, i, 0]
                ys[i, k] = pos[b0 + k, i, 1]
                av[i, k] = active[b0 + k, i]
        for i in range(n):
            for k in range(w):
                ct[i, k] = zero
            for j in range(n):
                other = i != j
                for k in range(w):
                    dx = xs[i, k] - xs[j, k]
                    dy = ys[i, k] - ys[j, k]
                    d = np.sqrt(dx * dx + dy * dy)
                    dt[i, j, k] = d
                    ok = (d <= radius) & other & av[i, k] & av[j, k]
                    nt[i, j, k] = ok
                    c = d2c - d * d
                    ct[i, k] += c if (ok & (c > zero)) else zero  # a select, so the loop vectorizes
        for k in range(w):
            for i in range(n):
                close[b0 + k, i] = ct[i, k]
                for j in range(n):
                    dist[b0 + k, i, j] = dt[i, j, k]
                    nb[b0 + k, i, j] = nt[i, j, k]


def _membership_loops(pos, consumer_pos, radii, active, at):
    n_envs, n, m = pos.shape[0], pos.shape[1], consumer_pos.shape[1]
    for b in range(n_envs):
        for i in range(n):
            best = np.float32(np.inf)
            k = m
            if active[b, i]:
                for c in range(m):
                    dx = pos[b, i, 0] - consumer_pos[b, c, 0]
                    dy = pos[b, i, 1] - consumer_pos[b, c, 1]
                    d = np.sqrt(dx * dx + dy * dy)
                    if d <= radii[b, c] and d < best:  # strict: the lowest index wins a tie, as in torch.min
                        best = d
                        k = c
            at[b, i] = k


_compiled: dict = {}


def _kernels() -> dict:
    """The loops above compiled by numba (or loaded from its cache) on first use: importing
    numba costs ~0.3 s, which processes that never step a World should not pay."""
    if not _compiled:
        try:
            from numba import njit
        except ImportError as exc:  # a venv built before numba joined the requirements
            raise ImportError(f"the simulator needs numba: pip install 'numba>=0.59' ({exc})") from exc

        pair = njit(cache=True, nogil=True)(_pairwise_loops)
        member = njit(cache=True, nogil=True)(_membership_loops)
        # both specializations now (the dtypes and layouts of every later call), so a node's first
        # membership call in the mission does not stall a tick loading or compiling it
        f32, one = np.float32, np.ones((1, 1), np.bool_)
        pair(np.zeros((1, 1, 2), f32), one, f32(1.0), f32(1.0), np.empty((1, 1, 1), f32),
             np.empty((1, 1, 1), np.bool_), np.empty((1, 1), f32))
        member(np.zeros((1, 1, 2), f32), np.zeros((1, 1, 2), f32), np.ones((1, 1), f32), one,
               np.empty((1, 1), np.int64))
        _compiled.update(pairwise=pair, membership=member)
    return _compiled


def pairwise(pos: Tensor, active: Tensor, radius: float, collision_distance: float) -> tuple[Tensor, Tensor, Tensor]:
    """pos [B,N,2] float32, active [B,N] bool -> (distances [B,N,N], neighbours [B,N,N] bool,
    close [B,N]: sum over neighbours j of max(d_c^2 - d_ij^2, 0)). Off the CPU: `pairwise_torch`."""
    if pos.device.type != "cpu":
        return pairwise_torch(pos, active, radius, collision_distance)
    b, n = pos.shape[0], pos.shape[1]
    dist = torch.empty(b, n, n)
    nb = torch.empty(b, n, n, dtype=torch.bool)
    close = torch.empty(b, n)
    _kernels()["pairwise"](pos.contiguous().numpy(), active.contiguous().numpy(), np.float32(radius),
                           np.float32(collision_distance ** 2), dist.numpy(), nb.numpy(), close.numpy())
    return dist, nb, close


def pairwise_torch(pos: Tensor, active: Tensor, radius: float,
                   collision_distance: float) -> tuple[Tensor, Tensor, Tensor]:
    """`pairwise` from the rules' own functions (any device; the kernel's test oracle). Its
    distances come from `cdist` and may differ from the kernel's in the last bit."""
    dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    nb = neighbour_mask(pos, active, radius, dist)
    return dist, nb, close_pairs(collision_distance, dist, nb)


def membership(pos: Tensor, consumer_pos: Tensor, radii: Tensor, active: Tensor) -> Tensor:
    """`resources.membership`: pos [B,N,2], consumer_pos [B,M,2], radii [B,M], active [B,N] ->
    consumer index [B,N] (int64, M for none). Off the CPU: `resources.membership` itself."""
    if pos.device.type != "cpu":
        return res.membership(pos, consumer_pos, radii, active)
    at = torch.empty(pos.shape[:2], dtype=torch.long)
    _kernels()["membership"](pos.contiguous().numpy(), consumer_pos.contiguous().numpy(),
                             radii.to(torch.float32).contiguous().numpy(), active.contiguous().numpy(), at.numpy())
    return at
