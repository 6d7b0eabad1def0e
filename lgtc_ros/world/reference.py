"""A plain numpy simulator of ONE env, written independently of the batched torch code.

Two uses: the baseline of `lgtc bench` (a Python loop over envs calling `step_one`), and an
oracle in the tests (the batched `World` must reproduce it). Same rules as `world/resources.py`
and `world/rewards.py`, written out per env with numpy (float64).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lgtc_ros.scenario import Scenario


@dataclass(frozen=True)
class OneEnv:
    """State of one env: pos [N,2], supply [N,r], active [N], consumer_pos [M,2], need [M,r],
    demand [M,r], assign [N] (-1 none), contributed [N,M]."""

    pos: np.ndarray
    supply: np.ndarray
    active: np.ndarray
    consumer_pos: np.ndarray
    need: np.ndarray
    demand: np.ndarray
    assign: np.ndarray
    contributed: np.ndarray


def step_one(s: Scenario, env: OneEnv, action: np.ndarray) -> tuple[OneEnv, dict[str, np.ndarray]]:
    """One dt for one env (no events). action [N,2] in arena units/s. Returns (state, terms [N])."""
    g = s.rewards
    persistent = np.array(s.persistent_mask)
    n, m = env.pos.shape[0], env.consumer_pos.shape[0]
    act = env.active.astype(float)

    speed = np.linalg.norm(action, axis=1, keepdims=True)
    vel = action * np.minimum(1.0, s.v_max / np.maximum(speed, 1e-12)) * act[:, None]
    pos = np.clip(env.pos + vel * s.dt, -1.0, 1.0)

    radii = s.consumer_radius * (1 + s.consumer_radius_demand_scale * env.demand.sum(1))
    at = np.full(n, -1)
    for i in np.flatnonzero(env.active):
        d = np.linalg.norm(env.consumer_pos - pos[i], axis=1)
        inside = np.flatnonzero(d <= radii)
        if inside.size:
            at[i] = inside[np.argmin(d[inside])]

    supply, need = env.supply.copy(), env.need.copy()
    released = np.zeros_like(supply)
    inst_open_before = (need[:, ~persistent]).sum(1) > 0
    for c in range(m):
        here = at == c
        incoming = supply[here][:, ~persistent].sum(0)
        delivered = np.minimum(incoming, need[c, ~persistent])
        frac = np.divide(delivered, incoming, out=np.zeros_like(incoming), where=incoming > 0)
        released[np.ix_(here, ~persistent)] = supply[here][:, ~persistent] * frac
        need[c, ~persistent] -= delivered
    supply = np.maximum(supply - released, 0.0)
    need = np.maximum(need, 0.0)
    contributed = env.contributed.copy()
    for i in np.flatnonzero(released.sum(1) > 0):
        contributed[i, at[i]] = True
    completed = inst_open_before & (need[:, ~persistent].sum(1) <= 1e-6)

    covered = np.zeros_like(need)
    covering = np.zeros(n, bool)
    attended = np.zeros(m, bool)
    for c in range(m):
        here = at == c
        covered[c, persistent] = np.minimum(supply[here][:, persistent].sum(0), need[c, persistent])
        for i in np.flatnonzero(here):
            if np.any((supply[i] > 0) & (need[c] > 0)):
                attended[c] = True
                if np.any((supply[i] > 0) & (need[c] > 0) & persistent):
                    covering[i] = True
    rates = np.array([x.discharge_rate for x in s.resources])
    supply = np.maximum(supply - rates * s.dt * act[:, None], 0.0)
    demand = np.maximum(np.where(persistent, need - covered, need), 0.0)

    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    both = env.active[:, None] & env.active[None]
    neighbours = (dist <= s.comm_radius) & both & ~np.eye(n, dtype=bool)
    coll = -g.collision * (np.maximum(g.collision_distance**2 - dist**2, 0.0) * neighbours).sum(1)

    assign_term = np.zeros(n)
    for i in range(n):
        c = env.assign[i]
        if c < 0:
            continue
        if at[i] == c:
            assign_term[i] = g.assignment_inside
        else:
            d = env.consumer_pos[c]
            assign_term[i] = g.assignment_progress * (np.sum((env.pos[i] - d) ** 2) - np.sum((pos[i] - d) ** 2))
    everyone = bool(np.all(attended | (need.sum(1) <= 0)))
    terms = {
        "assignment": assign_term,
        "instantaneous_release": g.instantaneous_release * released.sum(1),
        "persistent_cover": g.persistent_cover * covering,
        "subteam_completion": g.subteam_completion * (contributed & completed[None]).any(1),
        "collision": coll,
        "all_covered": np.full(n, g.all_covered * everyone),
        "demand_reduction": np.full(n, g.demand_reduction * (env.demand - demand).sum()),
    }
    terms = {k: v.astype(float) * act for k, v in terms.items()}
    new = replace(env, pos=pos, supply=supply, need=need, demand=demand, contributed=contributed)
    return new, terms
