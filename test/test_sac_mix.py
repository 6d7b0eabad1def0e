"""The VDN and QMIX peers (SAC-adapted): the mixer is monotonic, the tanh log-density is right,
a short seeded VDN run learns, and the saved policy flies through the IPPO export path."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch.distributions import Normal

from lgtc_ros.evaluate import RandomPolicy, rollout
from lgtc_ros.policy.export import export, load
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.train.ippo import load_policy
from lgtc_ros.train.runner import read_csv
from lgtc_ros.train.sac_mix import Mixer, SacArgs, SacTrainer, team_value

SMALL = load_scenario(resolve_scenario("scale_5x2"))


def args(tmp_path, algo, steps, **kw) -> SacArgs:
    return SacArgs(**{"algo": algo, "scenario": "scale_5x2", "total_steps": steps, "num_envs": 16, "batch_size": 64,
                      "buffer_size": 8000, "learning_starts": 320, "feature_dim": 16, "hidden": (64, 64),
                      "out": str(tmp_path / algo), "log_every": 50, "threads": 1, "learning_rate": 1e-3, **kw})


def test_qmix_mixer_is_monotonic_and_vdn_sums_flying_agents():
    torch.manual_seed(0)
    mix = Mixer(4, 8)
    q = torch.randn(16, 4, requires_grad=True)
    mix(q, torch.randn(16, 8)).sum().backward()
    assert (q.grad >= 0).all()                                   # dQ_tot / dQ_i >= 0 for every agent
    active = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    assert team_value(torch.tensor([[1.0, 2.0, 50.0, 3.0]]), torch.zeros(1, 4, 8), active, None).item() == 6.0


def test_tanh_log_density_matches_a_change_of_variables(tmp_path):
    trainer = SacTrainer(args(tmp_path, "vdn", 16))
    mean, log_std = torch.tensor([[0.3, -1.2]]), torch.tensor([[-0.5, 0.1]])
    torch.manual_seed(1)
    action, logp = trainer._sample(mean, log_std)
    u = torch.atanh(action)
    want = (Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - action ** 2)).sum(-1)
    assert torch.allclose(logp, want, atol=1e-4) and action.abs().max() < 1


@pytest.mark.parametrize("algo, bf16", [("vdn", False), ("vdn", True), ("qmix", False)])
def test_short_run_learns_and_exports(tmp_path, algo, bf16):
    """VDN learns, in fp32 and with bf16 hidden layers; QMIX runs the same loop, briefly."""
    torch.manual_seed(0)
    steps = 12800 if algo == "vdn" else 640
    assert SacTrainer(args(tmp_path, algo, steps, bf16=bf16)).run() == "done"
    for name in ("policy.pt", "critics.pt", "train_log.csv", "learning_curve.png", "config.json"):
        assert (tmp_path / algo / name).stat().st_size > 0
    model, _ = load_policy(tmp_path / algo / "policy.pt")
    assert model.head_cfg.squash and not model.cfg.consensus
    pt, _ = export(model, SMALL, tmp_path / f"{algo}.pt")
    step, _ = load(pt, SMALL)
    k = 2
    vel, *_ = step(torch.zeros(2), torch.ones(SMALL.n_resources) * 0.1, torch.rand(2, 2), torch.rand(2, 4),
                   torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.zeros(model.cfg.state_dim), torch.rand(k, 2),
                   torch.rand(k, model.cfg.feature_dim), torch.rand(k, model.cfg.state_dim))
    assert vel.norm() <= SMALL.v_max + 1e-6 and math.isfinite(float(vel.norm()))
    if algo == "vdn":
        learned, _ = rollout(SMALL, LearnedPolicy.load(pt, SMALL), 32, seed=99)
        rand, _ = rollout(SMALL, RandomPolicy(0), 32, seed=99)
        assert learned.returns.mean() > rand.returns.mean() + 0.2, (learned.returns.mean(), rand.returns.mean())


def test_cli_trains_the_sac_peers_and_extends_them_by_resuming(tmp_path):
    from lgtc_ros.cli import main

    out = tmp_path / "q"
    assert main(["train", "--algo", "qmix", "--scenario", "scale_5x2", "--steps", "320", "--out", str(out),
                 "--quiet", "--set", "num_envs=16", "--set", "feature_dim=16", "--set", "hidden=32,32"]) == 0
    assert (out / "policy.pt").is_file()
    config = json.loads((out / "config.json").read_text())  # every --set applies, repeated or not
    assert (config["num_envs"], config["feature_dim"], config["hidden"]) == (16, 16, [32, 32])
    assert main(["train", "--out", str(out), "--steps", "640", "--resume", "--quiet"]) == 0
    assert [int(r["env_steps"]) for r in read_csv(out / "train_log.csv")][-1] == 640
    with pytest.raises(SystemExit, match="no run to continue"):
        main(["train", "--algo", "vdn", "--out", str(tmp_path / "v"), "--resume", "--quiet"])
    with pytest.raises(SystemExit, match="other settings"):
        main(["train", "--out", str(out), "--steps", "960", "--resume", "--quiet", "--set", "batch_size=32"])
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["train", "--algo", "qmix", "--scenario", "scale_5x2", "--steps", "320", "--out", str(out), "--quiet"])


class Killed(Exception):
    """Stands for SIGKILL: the trainer gets no chance to save."""


@pytest.mark.parametrize("stop", ["sigint", "killed"])
def test_an_interrupted_run_resumes_to_the_bit(tmp_path, stop):
    """SIGINT mid-run (between two log rows, after learning began) saves the replay, the random
    streams and the log block in progress; a kill leaves the last periodic checkpoint and log rows
    past it. Either way the resumed run ends with the weights and the log of the run that was
    never stopped."""
    import os
    import signal

    from lgtc_ros.train.sac_mix import train

    def run(name):
        return dataclasses.replace(args(tmp_path, "qmix", 960, log_every=10, checkpoint_every=3, bf16=True),
                                   out=str(tmp_path / name))

    assert SacTrainer(run("whole")).run() == "done"
    stopped = SacTrainer(run("stopped"))
    calls = []

    def interrupt(n):
        calls.append(n)
        if len(calls) == 45:
            if stop == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise Killed

    if stop == "sigint":
        assert stopped.run(on_step=interrupt) == "interrupted"
        assert stopped.env_steps == 45 * 16 and stopped.updates > 0
    else:
        with pytest.raises(Killed):
            stopped.run(on_step=interrupt)
        assert len(read_csv(tmp_path / "stopped" / "train_log.csv")) == 4    # rows past the checkpoint (row 3)
    assert train(run("stopped"), resume=True, show_progress=False) == "done"
    whole = torch.load(tmp_path / "whole" / "policy.pt", weights_only=False)["model"]
    resumed = torch.load(tmp_path / "stopped" / "policy.pt", weights_only=False)["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    timing = ("wall_s", "sps_env")
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in read_csv(tmp_path / n / "train_log.csv")]
            for n in ("whole", "stopped")]
    assert rows[0] == rows[1] and len(rows[0]) == 6
