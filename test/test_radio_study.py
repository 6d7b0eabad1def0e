"""The radio study (issue 12, point 3): radio off means the policy hears no neighbour at all, and
nothing else changes; the graph filter's probe flies the exported model's weights and measures
neighbour terms that vanish without neighbours; the S = 0 training flag cuts exactly the filter."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lgtc_ros import studies
from lgtc_ros.evaluate import rollout
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.sweep import variant

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "lgtc_paper_10x4.pt"
# 8 ticks an episode: enough for messages to flow (a neighbour counts from its second tick on)
SHORT = dataclasses.replace(load_scenario(resolve_scenario("paper_10x4")), episode_steps=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _SpyStep:
    """A step that records the neighbour mask it is handed, then flies the real one."""

    def __init__(self, step):
        self.step, self.masks = step, []
        self.state_dim, self.feature_dim = step.state_dim, step.feature_dim

    def batched(self, *args):
        self.masks.append(args[-1].clone())
        return self.step.batched(*args)


def _spied(scenario):
    loaded = LearnedPolicy.load(MODEL, scenario, allow_consumer_change=True)
    spy = _SpyStep(loaded.step)
    return LearnedPolicy(spy, loaded.name, loaded.meta), spy


def test_radio_off_hands_the_policy_an_all_false_neighbour_mask():
    scenario = variant(SHORT, 10, 4)
    on, spy_on = _spied(scenario)
    off, spy_off = _spied(scenario)
    stats_on, _ = rollout(scenario, on, 2, seed=5)
    stats_off, _ = rollout(scenario, studies.RadioOff(off), 2, seed=5)
    assert len(spy_off.masks) == scenario.episode_steps
    assert all(not m.any() for m in spy_off.masks)
    # with the radio on the same episodes do hear neighbours, and the return moves when they are cut
    assert sum(int(m.sum()) for m in spy_on.masks) > 0
    assert not np.array_equal(stats_on.returns, stats_off.returns)


def test_one_agent_flies_the_same_with_the_radio_on_and_off():
    [row] = studies.radio_on_off(MODEL, agents=[1], consumers=1, episodes=2, seed=3, base=SHORT)
    assert row["on"] == row["off"]  # returns, collisions and demand, bit for bit
    assert row["diff_on_off"]["mean"] == 0.0
    [usage] = studies.graph_filter_usage(MODEL, agents=[1], consumers=1, episodes=2, seed=3, base=SHORT)
    u = usage["usage"]
    assert u["agent_steps"] == 2 * SHORT.episode_steps
    assert u["frac_with_neighbour"] == 0.0 and u["q_nb"] == 0.0 and u["d_nb"] == 0.0 and u["ode_nb"] == 0.0
    assert u["dv_cut"] == 0.0 and u["flips"] == 0.0 and u["q_self"] > 0.0
    assert usage["probe"] == usage["filter_off"]
    # the unfrozen copy flies the exported model's episodes
    np.testing.assert_allclose(usage["probe"]["returns"], row["on"]["returns"], atol=1e-4)


def test_the_study_rows_on_two_tiny_episodes():
    rows = studies.radio_on_off(MODEL, agents=[10], episodes=2, seed=7, base=SHORT)
    usage = studies.graph_filter_usage(MODEL, agents=[10], episodes=2, seed=7, base=SHORT)
    [r], [g] = rows, usage
    assert (r["agents"], r["consumers"], r["episodes"], r["seed"]) == (10, 4, 2, 7)
    for arm in ("on", "off"):
        assert len(r[arm]["returns"]) == 2 and all(math.isfinite(v) for v in r[arm]["returns"])
        assert len(r[arm]["collisions"]) == 2
    d = r["diff_on_off"]
    assert all(math.isfinite(d[k]) for k in ("mean", "se", "lo", "hi")) and d["lo"] <= d["mean"] <= d["hi"]
    assert d["mean"] == pytest.approx(np.mean(r["on"]["returns"]) - np.mean(r["off"]["returns"]))
    u = g["usage"]
    assert all(math.isfinite(v) for v in u.values())
    assert 0.0 < u["frac_with_neighbour"] <= 1.0 and u["mean_heard"] > 0.0
    assert u["q_nb"] > 0.0 and u["q_self"] > 0.0 and u["dv_cut"] > 0.0 and u["dv_deaf"] > 0.0
    np.testing.assert_allclose(g["probe"]["returns"], r["on"]["returns"], atol=1e-4)
    text = studies.radio_markdown(rows, usage)
    assert text.count("\n| 10 |") == 3


def test_rebuilt_step_refuses_a_graph_it_does_not_reproduce(monkeypatch):
    loaded = LearnedPolicy.load(MODEL, SHORT)
    step = studies._unfrozen_step(loaded)
    assert not step.fused_step and not step.cell.zero_s
    # a layer put in the wrong place is caught by the check against the exported step
    with torch.no_grad():
        step.cell.B1.weight.mul_(1.5)
    with pytest.raises(ValueError, match="differs"):
        studies._check_rebuilt(loaded.step, step, step.cell.cfg, "m")


def test_zero_s_cuts_the_filter_and_round_trips(tmp_path):
    from lgtc_ros.policy.checkpoint import build_model, load_policy, save_policy
    from lgtc_ros.policy.export import DroneStep
    from lgtc_ros.train.ippo import Args

    torch.manual_seed(0)
    plain = build_model(Args(feature_dim=16, state_dim=8, hidden=(32, 32)), 4)
    torch.manual_seed(0)
    cut = build_model(Args(feature_dim=16, state_dim=8, hidden=(32, 32), zero_s=True), 4)
    assert not plain.cfg.zero_s and cut.cfg.zero_s
    g = torch.Generator().manual_seed(1)
    b, n = 2, 5
    inputs = (torch.rand(b, n, 2, generator=g), torch.rand(b, n, 4, generator=g), torch.rand(b, 4, 2, generator=g),
              torch.rand(b, 4, 4, generator=g), torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.rand(b, n, 8, generator=g),
              torch.rand(b, n, 2, generator=g) + 5.0, torch.rand(b, n, 16, generator=g))  # messages far: no crowding
    heard = torch.rand(b, n, n, generator=g) > 0.3
    deaf = torch.zeros_like(heard)
    with torch.no_grad():
        p_heard, p_deaf = (torch.jit.script(DroneStep(plain.eval(), 0.5)).batched(*inputs, m) for m in (heard, deaf))
        c_heard, c_deaf = (torch.jit.script(DroneStep(cut.eval(), 0.5)).batched(*inputs, m) for m in (heard, deaf))
    assert not torch.equal(p_heard[0], p_deaf[0])                     # as usual the neighbours matter
    assert all(torch.equal(u, v) for u, v in zip(c_heard, c_deaf))    # with S = 0 they do not
    assert all(torch.equal(u, v) for u, v in zip(c_deaf, p_deaf))     # and without neighbours nothing differs
    save_policy(tmp_path / "policy.pt", cut, Args(zero_s=True, feature_dim=16, state_dim=8, hidden=(32, 32)),
                str(ROOT / "config" / "scenarios" / "paper_10x4.yaml"))
    assert load_policy(tmp_path / "policy.pt")[0].cfg.zero_s


def test_runtime_radio_off_is_the_batched_radio_off():
    [r] = studies.radio_runtime(MODEL, seeds=[4], agents=4, consumers=4, cbfs=("off",), base=SHORT)
    assert (r["cbf"], r["agents"], r["episodes"]) == ("off", 4, 1)
    assert r["on"]["returns"] != r["off"]["returns"]
    # without the CBF, every message dropped in the runtime flies the episode the batched evaluator
    # flies with `RadioOff` (the same world seed; per-drone and batched steps agree to float noise)
    scenario = variant(SHORT, 4, 4)
    for arm, wrap in (("on", lambda p: p), ("off", studies.RadioOff)):
        stats, _ = rollout(scenario, wrap(LearnedPolicy.load(MODEL, scenario, allow_consumer_change=True)), 1, seed=4)
        assert r[arm]["returns"][0] == pytest.approx(float(stats.returns[0]), abs=1e-6)  # on - off: 2e-4
        assert r[arm]["collisions"][0] == int(stats.collisions[0])
