"""The IPPO trainer: GAE and losses by hand, learning signal on a small scenario, exact resume,
Ctrl-C checkpoints, the CLI."""
from __future__ import annotations

import csv

import pytest
import torch
import yaml

from lgtc_ros.evaluate import RandomPolicy, rollout
from lgtc_ros.policy.learned import LearnedPolicy
from lgtc_ros.scenario import load_scenario
from lgtc_ros.train.ippo import Args, Trainer, gae, load_policy, ppo_losses, train

SMALL = {
    "name": "reach_3x1", "n_agents": 3, "n_consumers": 1,
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
                update_epochs=2, feature_dim=16, state_dim=8, hidden=(32, 32), learning_rate=1e-3, threads=1,
                checkpoint_every=1000)
    base.update(kw)
    return Args(**base)


def test_gae_matches_hand_computation():
    r = torch.tensor([1.0, 0.0, 2.0])
    v = torch.tensor([0.5, 1.0, 1.5])
    d = torch.tensor([0.0, 1.0, 0.0])  # the episode ends after step 1
    adv, ret = gae(r, v, d, last_value=torch.tensor(3.0), gamma=0.9, lam=0.5)
    d2 = 2.0 + 0.9 * 3.0 - 1.5           # bootstraps from V(s_T)
    d1 = 0.0 - 1.0                       # terminal: no bootstrap
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = torch.tensor([d0 + 0.9 * 0.5 * d1, d1, d2])
    assert torch.allclose(adv, expected)
    assert torch.allclose(ret, expected + v)


def test_ppo_losses_clip_and_value():
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2)
    same = ppo_losses(torch.zeros(2), torch.zeros(2), adv, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]),
                      0.2, mask)
    assert same["pg_loss"] == pytest.approx(0.0) and same["v_loss"] == pytest.approx(0.25)
    assert same["approx_kl"] == pytest.approx(0.0) and same["clipfrac"] == 0
    # ratio e^1 on a positive advantage is clipped at 1.2; on a negative one the unclipped term wins
    big = ppo_losses(torch.ones(2), torch.zeros(2), adv, torch.zeros(2), torch.zeros(2), 0.2, mask)
    assert big["pg_loss"] == pytest.approx((-1.2 + torch.e) / 2, rel=1e-5)
    assert big["clipfrac"] == 1.0
    masked = ppo_losses(torch.ones(2), torch.zeros(2), adv, torch.zeros(2), torch.zeros(2), 0.2,
                        torch.tensor([1.0, 0.0]))
    assert masked["pg_loss"] == pytest.approx(-1.2)


def test_short_training_rises_above_random(tmp_path):
    args = small_args(tmp_path, total_steps=16 * 30 * 150)
    assert train(args, show_progress=False) == "done"
    rows = list(csv.DictReader((tmp_path / "run" / "train_log.csv").open()))
    assert len(rows) == 150
    first = sum(float(r["episode_return"]) for r in rows[:10]) / 10
    last = sum(float(r["episode_return"]) for r in rows[-10:]) / 10
    scenario = load_scenario(args.scenario)
    learned, _ = rollout(scenario, LearnedPolicy.load(tmp_path / "run" / "policy.pt", scenario), 64, seed=99)
    rand, _ = rollout(scenario, RandomPolicy(0), 64, seed=99)
    assert last > first + 0.3, (first, last)
    assert learned.returns.mean() > rand.returns.mean() + 0.3, (learned.returns.mean(), rand.returns.mean())
    for name in ("policy.pt", "checkpoint.pt", "learning_curve.png", "config.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert float(rows[-1]["contraction_min"]) >= 0  # tau >= 0 held throughout


@pytest.mark.parametrize("algo,bf16", [("lgtc-ippo", False), ("ippo", False), ("momappo", False),
                                       ("lgtc-ippo", True)])
def test_resume_gives_the_same_next_update(tmp_path, algo, bf16):
    one = small_args(tmp_path / "a", algo=algo, total_steps=16 * 30 * 3, num_steps=20, bf16=bf16)
    Trainer(one).run()
    straight, _ = load_policy(tmp_path / "a" / "run" / "checkpoint.pt")

    two = small_args(tmp_path / "b", algo=algo, total_steps=16 * 20 * 2, num_steps=20, bf16=bf16)
    Trainer(two).run()
    resumed_args = small_args(tmp_path / "b", algo=algo, total_steps=16 * 30 * 3, num_steps=20, bf16=bf16)
    assert train(resumed_args, resume=True, show_progress=False) == "done"
    resumed, _ = load_policy(tmp_path / "b" / "run" / "checkpoint.pt")
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    log_a = list(csv.DictReader((tmp_path / "a" / "run" / "train_log.csv").open()))
    log_b = list(csv.DictReader((tmp_path / "b" / "run" / "train_log.csv").open()))
    assert [r["episode_return"] for r in log_a] == [r["episode_return"] for r in log_b]


def test_ctrl_c_saves_a_checkpoint_and_refuses_to_overwrite(tmp_path):
    args = small_args(tmp_path, total_steps=16 * 30 * 10)
    trainer = Trainer(args)

    def interrupt(steps, row):
        if row["update"] == 2:
            raise KeyboardInterrupt

    assert trainer.run(interrupt) == "interrupted"
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["update"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        train(small_args(tmp_path, total_steps=16 * 30 * 10), show_progress=False)


def test_cli_train_validates(tmp_path, capsys):
    from lgtc_ros.cli import main

    with pytest.raises(SystemExit, match="not a trainer setting"):
        main(["train", "--out", str(tmp_path / "x"), "--set", "warp_speed=9"])
    with pytest.raises(SystemExit, match="minibatch_size"):
        main(["train", "--out", str(tmp_path / "x"), "--set", "minibatch_size=100000", "--quiet"])


def test_sigterm_in_a_background_process_saves_a_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    args = small_args(tmp_path, total_steps=16 * 10 * 100000, num_steps=10)
    code = (f"import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as a background job gets
            f"from lgtc_ros.train.ippo import Args, train\n"
            f"print(train(Args(**{args.__dict__!r}), show_progress=False))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train_log.csv"
    deadline = time.time() + 600  # generous: CI machines may be busy; normally a few seconds
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(log.read_text().splitlines()) >= 3, "trainer did not start"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert "interrupted" in out, err[-2000:]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["update"] >= 2


def test_learn_is_the_minibatch_loss_stepped_in_a_random_order(tmp_path):
    """`Trainer.learn` = Adam steps on `minibatch_loss` over each epoch's random permutation,
    clipped; replayed by hand from the same rollout, RNG state and weights it gives the same
    weights (the learner's structure, whatever speed-ups it gets, keeps the algorithm)."""
    import copy

    from lgtc_ros.train.ippo import MINIBATCH_KEYS, minibatch_loss

    args = small_args(tmp_path, total_steps=16 * 20, num_steps=20, minibatch_size=64, update_epochs=2)
    trainer = Trainer(args)
    ro = trainer.collect()
    model0, opt_state = copy.deepcopy(trainer.model), copy.deepcopy(trainer.opt.state_dict())
    rng = torch.get_rng_state()
    trainer.learn(ro)

    model = model0
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    opt.load_state_dict(opt_state)
    torch.set_rng_state(rng)
    dones = ro["done"][..., None].expand_as(ro["reward"])
    adv, ret = gae(ro["reward"], ro["value"], dones, ro["last_value"], args.gamma, args.gae_lambda)
    T, B = ro["reward"].shape[:2]
    data = {k: ro[k].reshape(T * B, *ro[k].shape[2:]) for k in MINIBATCH_KEYS}
    data["adv"], data["ret"] = adv.reshape(T * B, -1), ret.reshape(T * B, -1)
    for _ in range(args.update_epochs):
        order = torch.randperm(T * B)
        for start in range(0, T * B, args.minibatch_size):
            idx = order[start:start + args.minibatch_size]
            loss, _ = minibatch_loss(model, {k: v[idx] for k, v in data.items()}, trainer.world.kinds, args)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            opt.step()
    for (k, a), b in zip(trainer.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_init_from_starts_from_a_trained_run_on_another_team_size(tmp_path):
    first = small_args(tmp_path / "a", total_steps=16 * 30)
    Trainer(first).run()
    trained, _ = load_policy(tmp_path / "a" / "run" / "policy.pt")
    bigger = dict(SMALL, name="reach_5x1", n_agents=5, random=dict(SMALL["random"], supply_range=[0.1, 0.2]))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "reach5.yaml").write_text(yaml.safe_dump(bigger))
    args = small_args(tmp_path / "b", scenario=str(tmp_path / "b" / "reach5.yaml"),
                      init_from=str(tmp_path / "a" / "run" / "policy.pt"))
    fresh = Trainer(small_args(tmp_path / "c", scenario=args.scenario)).model.state_dict()
    for (k, a), (_, b), (_, c) in zip(Trainer(args).model.state_dict().items(), trained.state_dict().items(),
                                      fresh.items()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(b, c) for b, c in zip(trained.state_dict().values(), fresh.values()))
    with pytest.raises(ValueError, match="other networks"):
        Trainer(small_args(tmp_path / "d", algo="ippo", init_from=args.init_from))
    with pytest.raises(ValueError, match="state_dim"):
        Trainer(small_args(tmp_path / "e", state_dim=4, init_from=args.init_from))
