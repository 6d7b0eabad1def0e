"""The expert through the CBF (`CentralizedExpert(safety=...)`): no pair closer than the safety
radius where the plain expert has such pairs, and the default expert unchanged."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lgtc_ros.evaluate import RandomPolicy, rollout
from lgtc_ros.expert import CentralizedExpert
from lgtc_ros.safety.batched import CbfFiltered
from lgtc_ros.scenario import load_scenario, resolve_scenario, validate
from lgtc_ros.sweep import variant
from lgtc_ros.world import World
from lgtc_ros.world.env import clip_speed


@pytest.fixture(scope="module")
def crowded():
    """20 agents started on a jittered grid in [-0.5, 0.5]^2 (every pair > D = 0.1 apart at reset),
    all bound for one consumer near the centre, 3 s."""
    base = variant(load_scenario(resolve_scenario("paper_10x4")), 20, 1)
    s = dataclasses.replace(base, episode_steps=60, random=dataclasses.replace(
        base.random, agent_half_width=0.5, consumer_half_width=0.1))
    validate(s)
    return s


def _start_is_safe(s, episodes, seed):
    w = World(s, n_envs=episodes, seed=seed)
    d = torch.cdist(w.pos, w.pos) + torch.eye(s.n_agents) * 9.0
    return bool((d.flatten(1).min(1).values > s.safety_radius).all())


@pytest.mark.parametrize("form", ["decentralized", "centralized"])
def test_cbf_expert_keeps_every_pair_apart_where_the_plain_one_does_not(crowded, form):
    s = crowded
    assert _start_is_safe(s, 4, 0)
    plain, _ = rollout(s, CentralizedExpert(), episodes=4, seed=0)
    expert = CentralizedExpert(safety=form)
    safe, _ = rollout(s, expert, episodes=4, seed=0)
    assert (plain.min_distance < s.safety_radius).all() and (plain.collisions > 10).all()
    assert (safe.min_distance >= s.safety_radius).all() and (safe.collisions == 0).all()
    assert safe.returns.mean() > plain.returns.mean()  # the collision penalty is gone, delivery goes on
    assert safe.demand_satisfied_pct.mean() > 10.0
    stats = expert.cbf_stats
    assert stats["calls"] > 0 and stats.get("fallback", 0) == 0


def test_cbf_wraps_any_policy(crowded):
    s = crowded
    raw, _ = rollout(s, RandomPolicy(0), episodes=2, seed=0)
    safe, _ = rollout(s, CbfFiltered(RandomPolicy(0)), episodes=2, seed=0)
    assert (raw.collisions > 0).all()
    assert (safe.min_distance >= s.safety_radius).all() and (safe.collisions == 0).all()


def _paper_expert_action(expert: CentralizedExpert, world: World) -> torch.Tensor:
    """The expert's command as it was before the `safety` option (P-control + repulsion)."""
    expert._update_plan(world)
    target = expert._slots(world)
    s, g = world.scenario, expert.gains
    v = g.kp * (target - world.pos)
    v = torch.where((expert._plan < 0)[..., None], torch.zeros_like(v), v)
    v = clip_speed(v, s.v_max) + expert._repulsion(world)
    return clip_speed(v, s.v_max) * world.active[..., None]


def test_default_expert_unchanged(crowded):
    a, b = World(crowded, n_envs=3, seed=5), World(crowded, n_envs=3, seed=5)
    new, ref = CentralizedExpert(), CentralizedExpert()
    assert new.safety is None and new.repulsion and new.cbf_stats == {}
    for _ in range(crowded.episode_steps):
        va, vb = new(a), _paper_expert_action(ref, b)
        assert torch.equal(va, vb)
        a.step(va)
        b.step(vb)
    assert torch.equal(a.pos, b.pos)


def test_named():
    assert CentralizedExpert.named("expert").safety is None
    assert CentralizedExpert.named("expert-cbf").safety == "decentralized"
    assert CentralizedExpert.named("expert-cbf-centralized").safety == "centralized"
    with pytest.raises(ValueError):
        CentralizedExpert.named("expert-qp")
    with pytest.raises(ValueError):
        CentralizedExpert(safety="off")


def test_cli_names_and_the_runtime_refusing_a_second_cbf():
    from lgtc_ros.cli import main, make_policy

    assert make_policy("expert-cbf", 0).safety == "decentralized"
    assert make_policy("expert-cbf-centralized", 0).safety == "centralized"
    # the per-drone runtime filters through its own CBF (--cbf): an expert-cbf there would filter twice
    with pytest.raises(SystemExit, match="applies its own CBF"):
        main(["sim", "--runtime", "--policy", "expert-cbf", "--episodes", "1", "--quiet"])
