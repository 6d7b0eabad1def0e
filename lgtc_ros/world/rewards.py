"""The hybrid reward of eq. (2), one function per term; every term [B,N] is logged separately.

    rw_i = rw_id + rw_im + rw_is + rw_rc + sum_j rw_ij + rw_s + rw_g

Signs are fixed here, gains come from the scenario (all >= 0). One deliberate departure from the
paper's text: the collision term. Written literally, -gamma * |p_i - p_j|^2 for |p_i - p_j| < eps
penalizes *least* at contact; we use -gamma * (eps^2 - |p_i - p_j|^2), which is zero at the
threshold and grows as agents close in — the intent the paper states ("penalize collisions").
"""
from __future__ import annotations

from torch import Tensor

from lgtc_ros.scenario import RewardGains

TERMS = (
    "assignment",              # rw_id
    "instantaneous_release",   # rw_im
    "persistent_cover",        # rw_is
    "subteam_completion",      # rw_rc
    "collision",               # sum_j rw_ij
    "all_covered",             # rw_s
    "demand_reduction",        # rw_g
)


def demand_reduction(gain: float, demand_prev: Tensor, demand_now: Tensor, active: Tensor) -> Tensor:
    """rw_g: the team's total demand reduction this step, shared by every active agent."""
    reduced = (demand_prev - demand_now).sum((-1, -2))  # [B]
    return gain * reduced[:, None] * active.to(demand_now.dtype)


def instantaneous_release(gain: float, released: Tensor) -> Tensor:
    """rw_im: proportional to the instantaneous resources the agent released. released [B,N,r]."""
    return gain * released.sum(-1)


def persistent_cover(gain: float, covering: Tensor) -> Tensor:
    """rw_is: a fixed amount per step while the agent covers a persistent demand. covering [B,N]."""
    return gain * covering.to(float_dtype(covering))


def subteam_completion(gain: float, completed: Tensor, contributed: Tensor) -> Tensor:
    """rw_rc: the sub-team that released to consumer m when its instantaneous demand is met.

    completed [B,M] bool (became fully satisfied this step), contributed [B,N,M] bool.
    """
    earned = (contributed & completed[:, None, :]).any(-1)
    return gain * earned.to(float_dtype(earned))


def close_pairs(distance: float, pair_dist: Tensor, neighbours: Tensor) -> Tensor:
    """sum_j max(0, d_c^2 - |p_i - p_j|^2) over neighbours j [B,N]: the collision term before its gain.

    pair_dist [B,N,N] distances |p_i - p_j|, neighbours [B,N,N] bool.
    """
    return ((distance**2 - pair_dist.square()).clamp_min(0.0) * neighbours).sum(-1)


def collision(gain: float, distance: float, pair_dist: Tensor, neighbours: Tensor) -> Tensor:
    """sum_j rw_ij = -gain * sum_j max(0, d_c^2 - |p_i - p_j|^2) over neighbours j."""
    return -gain * close_pairs(distance, pair_dist, neighbours)


def all_covered(gain: float, attended: Tensor, has_need: Tensor, active: Tensor) -> Tensor:
    """rw_s: every consumer that still needs something has at least one agent releasing there."""
    ok = (attended | ~has_need).all(-1)  # [B]
    return gain * (ok[:, None] & active).to(float_dtype(active))


def assignment(
    progress_gain: float, inside_gain: float, pos_prev: Tensor, pos: Tensor, target: Tensor, inside: Tensor
) -> Tensor:
    """rw_id: progress toward the assigned consumer d_{a_i} (squared distance), or gamma_id inside R_{a_i}.

    pos_prev, pos, target [B,N,2]; inside [B,N] bool. Agents without an assignment pass
    target = pos (zero progress) and inside = False.
    """
    before = ((pos_prev - target) ** 2).sum(-1)
    after = ((pos - target) ** 2).sum(-1)
    return (progress_gain * (before - after)).where(~inside, before.new_tensor(inside_gain))


def hybrid_reward(gains: RewardGains, **inputs: Tensor) -> dict[str, Tensor]:
    """All terms of eq. (2), each [B,N], for the named inputs (see the term functions)."""
    g = gains
    i = inputs
    terms = {
        "assignment": assignment(g.assignment_progress, g.assignment_inside, i["pos_prev"], i["pos"],
                                 i["target"], i["inside_target"]),
        "instantaneous_release": instantaneous_release(g.instantaneous_release, i["released"]),
        "persistent_cover": persistent_cover(g.persistent_cover, i["covering"]),
        "subteam_completion": subteam_completion(g.subteam_completion, i["completed"], i["contributed"]),
        "collision": collision(g.collision, g.collision_distance, i["pair_dist"], i["neighbours"]),
        "all_covered": all_covered(g.all_covered, i["attended"], i["has_need"], i["active"]),
        "demand_reduction": demand_reduction(g.demand_reduction, i["demand_prev"], i["demand"], i["active"]),
    }
    active = i["active"].to(i["pos"].dtype)
    return {name: value * active for name, value in terms.items()}


def float_dtype(t: Tensor):
    import torch

    return torch.get_default_dtype() if not t.is_floating_point() else t.dtype
