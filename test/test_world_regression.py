"""The simulator's steps are those of the code before the speed-up of issue 13.

Two checks. (1) test/data/world_rollouts.npz was recorded by `record()` below from the
`World.step` of commit 88e9c7a (before the fast step), for rollouts that exercise every rule:
releases of both kinds, completions, coverage, discharge, random discharges, scheduled events of
every kind (with the re-assignment they trigger replaced by a fixed rule, so no solver is
involved), agents landing mid-rollout and consumer radii growing with demand. (2) `reference_step`
keeps that step's code (built from resources.py and rewards.py) and is compared with `World.step`
step by step on random states, actions and assignments. Either way the state, distances, graphs
and by-products must match exactly, the reward terms to 1e-6.

Regenerate the fixture (only if a semantic change is intended): `python test/test_world_regression.py`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lgtc_ros.scenario import Event, load_scenario, resolve_scenario
from lgtc_ros.world import TERMS, World

FIXTURE = Path(__file__).parent / "data" / "world_rollouts.npz"
STATE = ("pos", "supply", "need", "demand", "contributed", "active", "assign", "consumer_pos", "t")
EXACT_INFO = ("attended", "covering", "at")
CLOSE = ("released",)


def _fixed_assigner(problem) -> np.ndarray:
    """Agent k of the problem -> consumer k mod M (deterministic, no solver)."""
    return np.arange(len(problem.agent_pos)) % len(problem.consumer_pos)


def cases() -> dict[str, tuple]:
    """name -> (scenario, n_envs, seed, steps)."""
    paper = load_scenario(resolve_scenario("paper_10x4"))
    grow = dataclasses.replace(paper, consumer_radius_demand_scale=0.3, name="paper_grow")
    events = dataclasses.replace(paper, name="paper_events", events=(
        Event(time_s=0.5, kind="discharge", agent=3, resource=0, value=0.05),
        Event(time_s=0.75, kind="dropout", agent=7),
        Event(time_s=1.0, kind="demand_change", consumer=1, resource=2, value=0.9),
        Event(time_s=1.25, kind="consumer_move", consumer=0, position=(0.1, -0.2)),
        Event(time_s=1.5, kind="discharge", select="lone", value=0.0, land=True),
    ))
    train = load_scenario(resolve_scenario("discharge_train_5x3"))
    train = dataclasses.replace(train, random=dataclasses.replace(train.random, discharge_window_s=(0.5, 2.0)))
    scale = load_scenario(resolve_scenario("scale_20x4"))
    return {"paper": (paper, 6, 3, 70), "grow": (grow, 4, 5, 60), "events": (events, 5, 1, 60),
            "train": (train, 6, 2, 60), "scale": (scale, 3, 9, 50)}


def rollout(scenario, n_envs: int, seed: int, steps: int) -> dict[str, np.ndarray]:
    """Seeded actions toward each agent's assigned consumer plus noise; agent 1 of env 0 lands
    at step 25 (set from outside, as the runtime's plant does)."""
    w = World(scenario, n_envs=n_envs, seed=seed, assigner=_fixed_assigner)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {}

    def keep(name, value):
        out.setdefault(name, []).append(value.detach().clone().numpy())

    obs = w.observe()
    keep("obs_neighbours", obs.neighbours)
    for k in range(steps):
        if k == 25:
            w.active[0, 1] = False
        has = w.assign >= 0
        target = torch.gather(w.consumer_pos, 1, w.assign.clamp_min(0)[..., None].expand(-1, -1, 2))
        target = torch.where(has[..., None], target, w.pos)
        action = 4 * (target - w.pos) + 0.3 * torch.randn(n_envs, scenario.n_agents, 2, generator=g)
        res = w.step(action)
        for name in STATE:
            keep(name, getattr(w, name))
        keep("reward", res.reward)
        keep("done", res.done)
        for name in TERMS:
            keep(f"term_{name}", res.terms[name])
        for name in EXACT_INFO + CLOSE:
            keep(f"info_{name}", res.info[name])
        # pair_dist is a function of pos: checked against float64 rather than stored
        p = w.pos.double()
        exact = (p[:, :, None] - p[:, None]).square().sum(-1).sqrt()
        assert torch.allclose(res.info["pair_dist"].double(), exact, rtol=0, atol=1e-6)
        keep("obs_neighbours", res.obs.neighbours)
        for name in ("pos", "supply", "consumer_pos", "demand", "active"):  # the state after the step
            assert torch.equal(getattr(res.obs, name), getattr(w, name)), name
    keep("observe_neighbours", w.observe().neighbours)
    return {k: np.stack(v) for k, v in out.items()}


def record(path: Path = FIXTURE) -> None:
    torch.set_num_threads(1)
    arrays = {f"{case}/{k}": v for case, args in cases().items() for k, v in rollout(*args).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("rows", ["auto", "all rows", "inside rows"])
@pytest.mark.parametrize("case", list(cases()))
def test_seeded_rollout_matches_the_recorded_one(case, rows, monkeypatch):
    # release and coverage on all rows, on the rows of the agents inside a consumer, or by their share
    import lgtc_ros.world.env as env

    monkeypatch.setattr(env, "SPARSE_BELOW", {"auto": env.SPARSE_BELOW, "all rows": 0.0, "inside rows": 1.01}[rows])
    data = np.load(FIXTURE)
    got = rollout(*cases()[case])
    for key, value in got.items():
        want = data[f"{case}/{key}"]
        assert value.shape == want.shape and value.dtype == want.dtype, key
        name = key.split("_", 1)[1] if key.startswith(("term_", "info_")) else key
        if key == "reward" or key.startswith("term_") or name in CLOSE:
            np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-6, err_msg=f"{case}/{key}")
        else:
            np.testing.assert_array_equal(value, want, err_msg=f"{case}/{key}")
    # the rollouts really exercise the rules
    if case in ("paper", "events", "scale"):
        assert data[f"{case}/term_instantaneous_release"].sum() > 0
        assert data[f"{case}/term_persistent_cover"].sum() > 0
    if case == "train":
        assert (~data["train/active"][-1]).any()


if __name__ == "__main__":
    record()
    print(f"wrote {FIXTURE}")


def reference_step(w: World, action: torch.Tensor) -> dict[str, torch.Tensor]:
    """The `World.step` of commit 88e9c7a (before issue 13's speed-up), rules from resources.py and
    rewards.py, on a copy of `w`'s state (no events). Returns the new state, terms and by-products."""
    from lgtc_ros.world import clip_speed, neighbour_mask
    from lgtc_ros.world import resources as res
    from lgtc_ros.world.rewards import hybrid_reward

    s = w.scenario
    pos, supply, need, demand = w.pos.clone(), w.supply.clone(), w.need.clone(), w.demand.clone()
    active, contributed, assign, cpos = w.active.clone(), w.contributed.clone(), w.assign.clone(), w.consumer_pos
    vel = clip_speed(action.to(pos.dtype), s.v_max) * active[..., None]
    pos_prev, pos = pos, (pos + vel * s.dt).clamp(-1.0, 1.0)
    radii = res.consumer_radii(s.consumer_radius, s.consumer_radius_demand_scale, demand)
    at = res.membership(pos, cpos, radii, active)
    released, delivered = res.release_instantaneous(supply, need, at, w.instantaneous)
    inst_open_before = (need * w.instantaneous).sum(-1) > 0
    need = (need - delivered).clamp_min(0.0)
    supply = (supply - released).clamp_min(0.0)
    contributed |= res.one_hot(at, s.n_consumers) & (released.sum(-1) > 0)[..., None]
    completed = inst_open_before & ((need * w.instantaneous).sum(-1) <= 1e-6)
    covered, covering = res.persistent_coverage(supply, need, at, w.persistent)
    attended = res.attended(supply, need, at)
    supply = res.discharge(supply, w.rates, active, s.dt)
    demand_prev, demand = demand, res.remaining_demand(need, covered, w.persistent)
    has = assign >= 0
    target = torch.gather(cpos, 1, assign.clamp_min(0)[..., None].expand(-1, -1, 2))
    target = torch.where(has[..., None], target, pos)
    pair_dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    neighbours = neighbour_mask(pos, active, s.comm_radius, pair_dist)
    terms = hybrid_reward(s.rewards, pos_prev=pos_prev, pos=pos, target=target, inside_target=(at == assign) & has,
                          released=released, covering=covering, completed=completed, contributed=contributed,
                          neighbours=neighbours, pair_dist=pair_dist, attended=attended, has_need=need.sum(-1) > 0,
                          active=active, demand_prev=demand_prev, demand=demand)
    return {"pos": pos, "supply": supply, "need": need, "demand": demand, "contributed": contributed,
            "neighbours": neighbours, "pair_dist": pair_dist, "attended": attended, "covering": covering,
            "released": released, "at": at, **{f"term_{k}": v for k, v in terms.items()}}


@pytest.mark.parametrize("sparse_below", [0.0, 0.35, 1.01])
@pytest.mark.parametrize("name, grow", [("paper_10x4", 0.0), ("paper_10x4", 0.3), ("scale_20x4", 0.0),
                                        ("discharge_train_5x3", 0.0)])
def test_step_equals_the_kept_reference_step(name, grow, sparse_below, monkeypatch):
    """Random states and actions, agents parked on consumers, assignments changed in place and
    replaced, agents landing: the step's state is the reference's bit for bit, the distances to
    the last bit, the terms to 1e-6."""
    import lgtc_ros.world.env as env

    monkeypatch.setattr(env, "SPARSE_BELOW", sparse_below)
    s = dataclasses.replace(load_scenario(resolve_scenario(name)), consumer_radius_demand_scale=grow)
    s = dataclasses.replace(s, random=dataclasses.replace(s.random, discharge_probability=0.0))
    b, n, m = 16, s.n_agents, s.n_consumers
    w = World(s, n_envs=b, seed=4, solve_assignment=False)
    g = torch.Generator().manual_seed(4)
    w.assign[:] = torch.randint(-1, m, (b, n), generator=g)
    w.pos[: b // 2, : n // 2] = w.consumer_pos[: b // 2, torch.arange(n // 2) % m]  # parked on consumers
    for k in range(40):
        if k == 10:
            w.assign[::2] = torch.randint(0, m, (b // 2, n), generator=g)      # in place
        if k == 20:
            w.assign = torch.randint(-1, m, (b, n), generator=g)               # a new tensor
        if k == 30:
            w.active[1, 0] = w.active[3, n - 1] = False
        scale = 0.05 if k % 3 else 1.0
        action = scale * torch.randn(b, n, 2, generator=g)
        want = reference_step(w, action)
        out = w.step(action)
        for key, value in want.items():
            got = out.terms[key[5:]] if key.startswith("term_") else (
                out.info[key] if key in out.info else out.obs.neighbours if key == "neighbours" else getattr(w, key))
            if key.startswith("term_"):
                torch.testing.assert_close(got, value, rtol=1e-6, atol=1e-6, msg=f"{key} at step {k}")
            elif key == "pair_dist":  # the fused kernel's sqrt(dx*dx + dy*dy) vs cdist: the last bit
                torch.testing.assert_close(got, value, rtol=0, atol=3e-7, msg=f"{key} at step {k}")
            else:
                assert torch.equal(got, value), f"{key} at step {k}"
        assert torch.allclose(out.reward, sum(want[f"term_{t}"] for t in TERMS), atol=1e-5)


def test_observe_after_step_reuses_the_graph_only_while_positions_and_active_stay():
    w = World(load_scenario(resolve_scenario("paper_10x4")), n_envs=4, seed=1, solve_assignment=False)
    out = w.step(torch.zeros(4, 10, 2))
    assert w.observe().neighbours is out.obs.neighbours
    w.pos[0, 0] = w.pos[0, 1]                                     # a caller moves a drone: recomputed
    fresh = w.observe().neighbours
    assert fresh is not out.obs.neighbours and fresh[0, 0, 1] and fresh[0, 1, 0]
    w.step(torch.zeros(4, 10, 2))
    w.active[1, 2] = False                                        # a drone lands: recomputed
    assert not w.observe().neighbours[1, 2].any() and not w.observe().neighbours[1, :, 2].any()
