"""The hierarchical grouping peer (`--algo hrl-grouping`): learning signal on a tiny scenario,
export through the per-drone interface and one runtime episode, the critic's permutation
invariance, termination, the linear assignment, resume."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lgtc_ros.evaluate import RandomPolicy, rollout
from lgtc_ros.policy.export import load
from lgtc_ros.policy.hrl import HRLConfig, HRLGrouping, HRLStep, load_trainer_policy
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.runtime.drone import load_drone_modules
from lgtc_ros.runtime.swarm import RuntimeConfig, SwarmRuntime
from lgtc_ros.scenario import load_scenario
from lgtc_ros.train.hrl import Args, Trainer, balanced_assignment, train

SMALL = {
    "name": "reach_3x2", "n_agents": 3, "n_consumers": 2,
    "resources": [{"name": "kit", "kind": "instantaneous"}, {"name": "cell", "kind": "persistent"}],
    "episode_steps": 30, "v_max": 1.0, "consumer_radius": 0.25,
    "random": {"demand_types_per_consumer": 2, "demand_range": [0.6, 0.9], "supply_types_per_agent": 1,
               "supply_range": [0.1, 0.3]},
}


def small_args(tmp_path, **kw) -> Args:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "reach.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    base = dict(scenario=str(path), out=str(tmp_path / "run"), num_envs=16, num_steps=30, minibatch_size=48,
                update_epochs=2, feature_dim=16, hidden=(32, 32), option_hidden=(32, 32), critic_hidden=(32, 32),
                learning_rate=1e-3, threads=1, checkpoint_every=1000)
    base.update(kw)
    return Args(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hrl")
    args = small_args(tmp, total_steps=16 * 30 * 80)
    assert train(args, show_progress=False) == "done"
    return args


def test_short_training_learns(trained):
    rows = list(csv.DictReader(open(f"{trained.out}/train_log.csv")))
    assert len(rows) == 80
    first = np.mean([float(r["episode_return"]) for r in rows[:10]])
    last = np.mean([float(r["episode_return"]) for r in rows[-10:]])
    scenario = load_scenario(trained.scenario)
    learned, _ = rollout(scenario, LearnedPolicy.load(f"{trained.out}/policy.pt", scenario), 64, seed=99)
    rand, _ = rollout(scenario, RandomPolicy(0), 64, seed=99)
    assert last > first + 0.2, (first, last)
    assert learned.returns.mean() > rand.returns.mean() + 0.3, (learned.returns.mean(), rand.returns.mean())
    assert float(rows[-1]["explained_variance"]) > 0.2
    for name in ("policy.pt", "checkpoint.pt", "learning_curve.png", "config.json"):
        assert (Path(trained.out) / name).stat().st_size > 0


def test_export_round_trip_and_a_runtime_episode(trained, tmp_path):
    from lgtc_ros.cli import main

    scenario = load_scenario(trained.scenario)
    out = tmp_path / "hrl.pt"
    assert main(["export", "--policy", f"{trained.out}/policy.pt", "--scenario", trained.scenario,
                 "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["contraction_rate"] is None and meta["state_bound"] is None and meta["consensus"] is False
    assert meta["shapes"]["F"] == meta["shapes"]["G"] == 16 and meta["shapes"]["M"] == scenario.n_consumers
    module, _ = load(out, scenario)
    # the exported step = the trainer's policy.pt step, and the single-drone call = the batched one
    ref = LearnedPolicy.load(f"{trained.out}/policy.pt", scenario)
    exp = LearnedPolicy.load(out, scenario)
    short = dataclasses.replace(scenario, episode_steps=20)
    a, _ = rollout(short, ref, 4, seed=3)
    b, _ = rollout(short, exp, 4, seed=3)
    np.testing.assert_allclose(a.returns, b.returns, atol=1e-4)
    drones, meta2 = load_drone_modules(out, short, short.n_agents)
    assert drones[0] is not drones[1] and meta2["shapes"]["M"] == scenario.n_consumers
    res = SwarmRuntime(short, drones=drones, config=RuntimeConfig(cbf="off"), seed=5).run()
    stats, trace = rollout(short, LearnedPolicy.load(out, short), 1, seed=5, trace=True)
    np.testing.assert_allclose(np.stack(res.trace.pos), np.stack(trace.pos), atol=1e-5)
    assert res.stats.returns[0] == pytest.approx(stats.returns[0], abs=1e-4)
    assert ((res.choices >= 0) & (res.choices < scenario.n_consumers)).all()  # the group, from the option one-hot
    # DeepSets over consumers and a padded option one-hot: the same file flies another M
    three = dataclasses.replace(short, n_consumers=3)
    other, _ = rollout(three, LearnedPolicy.load(out, three, allow_consumer_change=True), 2, seed=1)
    assert np.isfinite(other.returns).all()


def _random_batch(b=3, n=6, m=4, r=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    opt = torch.nn.functional.one_hot(torch.randint(0, m, (b, n), generator=g), m).float()
    return {"pos": rand(b, n, 2) * 2 - 1, "supply": rand(b, n, r), "consumer_pos": rand(b, m, 2) * 2 - 1,
            "demand": rand(b, m, r), "kinds": torch.tensor([0.0, 1.0, 0.0]), "opt": opt,
            "agg": rand(b, n, m), "crowd": rand(b, n, 3), "active": torch.ones(b, n, dtype=torch.bool)}


def _q(model, d):
    u, ctx, keys, psi, _ = model.encode(d["pos"], d["supply"], d["consumer_pos"][:, None], d["demand"][:, None],
                                        d["kinds"], d["opt"], d["agg"], d["crowd"])
    return model.critic(u, ctx, keys, psi, d["pos"], d["opt"], d["active"])


def test_centralized_critic_is_permutation_invariant():
    torch.manual_seed(0)
    model = HRLGrouping(HRLConfig(n_resources=3, n_consumers=4, feature_dim=16))
    d = _random_batch()
    q = _q(model, d)
    perm = torch.randperm(6)
    dp = {k: (v[:, perm] if k in ("pos", "supply", "opt", "agg", "crowd", "active") else v) for k, v in d.items()}
    np.testing.assert_allclose(_q(model, dp).detach(), q[:, perm].detach(), atol=1e-5)  # equivariant in agents
    # invariant in the others: agent 0's values do not depend on how the others are ordered
    rest = torch.cat([torch.tensor([0]), 1 + torch.randperm(5)])
    dr = {k: (v[:, rest] if k in ("pos", "supply", "opt", "agg", "crowd", "active") else v) for k, v in d.items()}
    np.testing.assert_allclose(_q(model, dr)[:, 0].detach(), q[:, 0].detach(), atol=1e-5)
    # equivariant in the consumers (options)
    cp = torch.tensor([2, 0, 3, 1])
    dc = {**d, "consumer_pos": d["consumer_pos"][:, cp], "demand": d["demand"][:, cp], "opt": d["opt"][..., cp],
          "agg": d["agg"][..., cp]}
    np.testing.assert_allclose(_q(model, dc).detach(), q[..., cp].detach(), atol=1e-5)


def test_option_is_kept_while_beta_is_small_and_switches_when_large():
    torch.manual_seed(0)
    model = HRLGrouping(HRLConfig(n_resources=2, n_consumers=3, feature_dim=8)).eval()
    last = model.option_head.rest[-1]
    step = HRLStep(model, v_max=1.0)
    pos, supply, kinds = torch.zeros(2), torch.tensor([0.3, 0.0]), torch.tensor([0.0, 1.0])
    consumer_pos, demand = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.0, -0.5]]), torch.tensor(
        [[0.0, 0.5], [0.6, 0.0], [0.7, 0.0]])  # consumer 0 wants nothing this drone carries
    none = torch.zeros(0, 2), torch.zeros(0, 16), torch.zeros(0, 16)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, -8.0]))  # beta ~ 3e-4 for every option
        held = torch.tensor([0.0, 1.0, 0.0])
        for _ in range(5):  # kept while beta is small, although option 2 scores as high
            _, x, psi, held = step(pos, supply, consumer_pos, demand, kinds, held, *none)
            assert held.tolist() == [0.0, 1.0, 0.0] and torch.equal(x[:3], held) and torch.equal(psi, x)
            assert x.shape == (16,) and x[3:].abs().sum() == 0
        _, _, _, first = step(pos, supply, consumer_pos, demand, kinds, torch.zeros(3), *none)
        assert first.sum() == 1 and first[0] == 0  # no option yet: one is chosen among the available ones
        # option 0 left its initiation set (nothing I carry is wanted there): terminated unless I am at it
        _, _, _, new = step(pos, supply, consumer_pos, demand, kinds, torch.tensor([1.0, 0.0, 0.0]), *none)
        assert new[0] == 0 and new.sum() == 1
        _, _, _, kept = step(torch.tensor([0.45, 0.5]), supply, consumer_pos, demand, kinds,
                             torch.tensor([1.0, 0.0, 0.0]), *none)
        assert kept.tolist() == [1.0, 0.0, 0.0]
        last.bias.copy_(torch.tensor([0.0, 8.0]))   # beta ~ 1: terminates, re-chooses an available one
        last.weight[0, 0] = 0.0
        _, _, _, new = step(torch.tensor([0.45, 0.5]), supply, consumer_pos, demand, kinds,
                            torch.tensor([1.0, 0.0, 0.0]), *none)
        assert new[0] == 0 and new.sum() == 1


def test_balanced_assignment_uses_capacities_and_initiation_sets():
    q = np.array([[1.0, 0.0, 0.0], [0.9, 0.2, 0.0], [0.8, 0.0, 0.1], [0.7, 0.6, 0.0]])
    avail = np.ones((4, 3), dtype=bool)
    m = balanced_assignment(q, avail, np.ones(4, dtype=bool))
    assert np.bincount(m, minlength=3).max() <= 2 and m[0] == 0 and m[3] == 1
    avail[:, 0] = False
    m = balanced_assignment(q, avail, np.array([True, True, True, False]))
    assert m[3] == -1 and (m[:3] != 0).all()


def test_resume_gives_the_same_next_update(tmp_path):
    one = small_args(tmp_path / "a", total_steps=16 * 20 * 3, num_steps=20)
    Trainer(one).run()
    two = small_args(tmp_path / "b", total_steps=16 * 20 * 2, num_steps=20)
    Trainer(two).run()
    assert train(small_args(tmp_path / "b", total_steps=16 * 20 * 3, num_steps=20), resume=True,
                 show_progress=False) == "done"
    a, _ = load_trainer_policy(tmp_path / "a" / "run" / "checkpoint.pt")
    b, _ = load_trainer_policy(tmp_path / "b" / "run" / "checkpoint.pt")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
