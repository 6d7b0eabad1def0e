"""Each term of eq. (2) against hand-computed cases, and their sum through the simulator."""
from __future__ import annotations

import pytest
import torch

from lgtc_ros.scenario import RewardGains, scenario_from_dict
from lgtc_ros.world import TERMS, World
from lgtc_ros.world import rewards as rw

T = torch.tensor


def test_demand_reduction_is_shared_by_active_agents():
    prev = T([[[1.0, 0.5], [0.2, 0.0]]])  # [B=1, M=2, r=2]
    now = T([[[0.7, 0.5], [0.0, 0.0]]])
    out = rw.demand_reduction(2.0, prev, now, T([[True, True, False]]))
    assert out[0].tolist() == pytest.approx([1.0, 1.0, 0.0])  # 2 * (0.3 + 0.2)


def test_demand_reduction_negative_when_coverage_is_lost():
    out = rw.demand_reduction(1.0, T([[[0.0]]]), T([[[0.4]]]), T([[True]]))
    assert out.item() == pytest.approx(-0.4)


def test_instantaneous_release_proportional():
    released = T([[[0.3, 0.0], [0.0, 0.0], [0.1, 0.05]]])
    assert rw.instantaneous_release(2.0, released)[0].tolist() == pytest.approx([0.6, 0.0, 0.3])


def test_persistent_cover_fixed_amount():
    assert rw.persistent_cover(0.05, T([[True, False]]))[0].tolist() == pytest.approx([0.05, 0.0])


def test_subteam_completion_goes_to_contributors_of_the_completed_consumer():
    completed = T([[True, False]])                      # consumer 0 finished this step
    contributed = T([[[True, False], [False, True], [True, True], [False, False]]])
    assert rw.subteam_completion(0.5, completed, contributed).tolist() == [[0.5, 0.0, 0.5, 0.0]]


def test_collision_penalty_hand_computed():
    pos = T([[[0.0, 0.0], [0.06, 0.0], [0.0, 0.5]]])
    dist = torch.cdist(pos, pos)
    nb = (dist <= 1.0) & ~torch.eye(3, dtype=torch.bool)
    out = rw.collision(10.0, 0.1, dist, nb)
    # pair (0,1): d = 0.06 < 0.1 -> -10 * (0.01 - 0.0036) = -0.064 each; agent 2 is clear
    assert out[0].tolist() == pytest.approx([-0.064, -0.064, 0.0], abs=1e-6)
    far = (dist <= 0.05) & ~torch.eye(3, dtype=torch.bool)  # not neighbours -> no penalty
    assert rw.collision(10.0, 0.1, dist, far).abs().sum() == 0


def test_collision_is_zero_at_the_threshold_and_grows_closer():
    def pen(d):
        pos = T([[[0.0, 0.0], [d, 0.0]]])
        dist = torch.cdist(pos, pos)
        return rw.collision(1.0, 0.1, dist, ~torch.eye(2, dtype=torch.bool)[None])[0, 0].item()

    assert pen(0.1) == pytest.approx(0.0, abs=1e-7)
    assert pen(0.02) < pen(0.05) < pen(0.09) < 0


def test_all_covered_requires_every_needing_consumer_attended():
    active = T([[True, True]])
    assert rw.all_covered(0.1, T([[True, False]]), T([[True, False]]), active)[0].tolist() == pytest.approx([0.1, 0.1])
    assert rw.all_covered(0.1, T([[True, False]]), T([[True, True]]), active).tolist() == [[0.0, 0.0]]


def test_assignment_progress_and_inside_bonus():
    prev = T([[[1.0, 0.0], [0.1, 0.0]]])
    now = T([[[0.5, 0.0], [0.05, 0.0]]])
    target = T([[[0.0, 0.0], [0.0, 0.0]]])
    inside = T([[False, True]])
    out = rw.assignment(2.0, 0.3, prev, now, target, inside)
    assert out[0].tolist() == pytest.approx([2.0 * (1.0 - 0.25), 0.3])


def test_hybrid_reward_masks_inactive_agents_and_sums_terms():
    scenario = scenario_from_dict({
        "name": "t", "n_agents": 2, "n_consumers": 1,
        "resources": [{"name": "kit", "kind": "instantaneous"}],
        "v_max": 1.0, "consumer_radius": 0.2,
        "rewards": {"instantaneous_release": 2.0, "demand_reduction": 1.0, "subteam_completion": 0.5,
                    "assignment_inside": 0.1, "all_covered": 0.0, "persistent_cover": 0.0},
        "initial": {"agent_pos": [[0.05, 0.0], [0.5, 0.5]], "supply": [[0.4], [0.1]],
                    "consumer_pos": [[0.0, 0.0]], "demand": [[0.5]]},
    })
    w = World(scenario, n_envs=1, seed=0)
    assert w.assign[0].tolist() == [0, 0]
    out = w.step(torch.zeros(1, 2, 2))
    assert set(out.terms) == set(TERMS)
    t = {k: v[0].tolist() for k, v in out.terms.items()}
    assert t["instantaneous_release"] == pytest.approx([0.8, 0.0])
    assert t["demand_reduction"] == pytest.approx([0.4, 0.4])
    assert t["subteam_completion"] == [0.0, 0.0]   # 0.1 of demand still open
    assert t["assignment"] == pytest.approx([0.1, 0.0])  # agent 0 inside; agent 1 did not move
    assert out.reward[0].tolist() == pytest.approx([sum(v[i] for v in t.values()) for i in range(2)])
    w.pos[0, 1] = torch.tensor([0.0, 0.1])  # agent 1 arrives with the missing 0.1
    out = w.step(torch.zeros(1, 2, 2))
    assert out.terms["subteam_completion"][0].tolist() == pytest.approx([0.5, 0.5])
    w.active[0, 1] = False
    out = w.step(torch.zeros(1, 2, 2))
    assert all(v[0, 1] == 0 for v in out.terms.values())


def test_gains_come_from_the_scenario():
    assert set(f for f in RewardGains.__dataclass_fields__) >= {
        "demand_reduction", "instantaneous_release", "subteam_completion", "persistent_cover",
        "all_covered", "collision", "collision_distance", "assignment_progress", "assignment_inside"}
