"""`lgtc` when things go wrong: every bad model file, out-of-range option and write conflict is one
line `lgtc: ...` and exit status 2 (no traceback); nothing is written over without --force and the
shipped models never; --resume refuses contradicting options and continues to the stored total;
the rounding of --steps is said; the thread count is explicit and recorded."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from lgtc_ros.cli import main
from lgtc_ros.policy.shipped import models_dir

SHIPPED = models_dir() / "lgtc_paper_10x4.pt"
SMALL = {
    "name": "reach_3x1", "n_agents": 3, "n_consumers": 1,
    "resources": [{"name": "kit", "kind": "instantaneous"}, {"name": "cell", "kind": "persistent"}],
    "episode_steps": 30, "v_max": 1.0, "consumer_radius": 0.25,
    "random": {"demand_types_per_consumer": 2, "demand_range": [0.6, 0.9], "supply_types_per_agent": 1,
               "supply_range": [0.1, 0.3]},
}
TINY = ["num_envs=4", "num_steps=10", "minibatch_size=8", "update_epochs=1", "feature_dim=8", "state_dim=4",
        "hidden=16,16", "learning_rate=1e-3", "checkpoint_every=1"]  # 40 env-steps per update


def fails(capsys, argv, *needles) -> str:
    """`lgtc argv` exits 2 with one line `lgtc: ...` on stderr (containing `needles`), no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lgtc: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Broken model files: truncated, no .json, a text file, malformed .json, a .json of another model."""
    d = tmp_path_factory.mktemp("bad")
    data = SHIPPED.read_bytes()
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    shutil.copy(SHIPPED.with_suffix(".json"), d / "truncated.json")
    (d / "nojson.pt").write_bytes(data)
    (d / "text.pt").write_text("these are my notes, not a model\n")
    (d / "badjson.pt").write_bytes(data)
    (d / "badjson.json").write_text('{"format_version": 1, "shapes": ')
    (d / "other.pt").write_bytes(data)
    (d / "other.json").write_text(json.dumps({**meta, "shapes": {**meta["shapes"], "F": 7}}))
    return d


CASES = [("truncated.pt", "truncated or corrupt"), ("nojson.pt", "metadata nojson.json is missing"),
         ("text.pt", "is not a model file"), ("badjson.pt", "malformed metadata (not JSON"),
         ("other.pt", "belongs to another model"), ("missing.pt", "no model at")]


@pytest.mark.parametrize("name, says", CASES)
def test_a_bad_model_is_one_line_and_exit_2(bad, capsys, name, says):
    path = str(bad / name)
    fails(capsys, ["sim", "--policy", path, "--episodes", "1", "--quiet"], path if name != "badjson.pt" else "badjson",
          says)
    fails(capsys, ["eval", "--policy", path, "--episodes", "1", "--quiet", "--out", str(bad / "e")], says)
    fails(capsys, ["sim", "--runtime", "--policy", path, "--episodes", "1", "--quiet"], says)
    fails(capsys, ["sweep", "--policy", path, "--agents", "3", "--consumers", "--out", str(bad / "s"), "--quiet"],
          says)
    assert not (bad / "e").exists() and not (bad / "s").exists()


def test_export_of_an_exported_model_and_of_a_bad_file(bad, tmp_path, capsys):
    fails(capsys, ["export", "--policy", str(SHIPPED), "--out", str(tmp_path / "m.pt")], "is an exported model already",
          "policy.pt or checkpoint.pt")
    fails(capsys, ["export", "--policy", str(bad / "truncated.pt"), "--out", str(tmp_path / "m.pt")],
          "truncated or corrupt")
    fails(capsys, ["export", "--policy", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "m.pt")],
          f"no model at {tmp_path / 'nothing.pt'}")
    assert not list(tmp_path.iterdir())


def test_a_model_for_another_scenario_is_one_line(capsys):
    fails(capsys, ["sim", "--scenario", "discharge_5x3", "--policy", str(SHIPPED), "--quiet"],
          "trained for 4 consumers (M)", "--any-consumers")


def test_no_traceback_in_a_real_process(bad):
    proc = subprocess.run([sys.executable, "-m", "lgtc_ros.cli", "sim", "--policy", str(bad / "truncated.pt"),
                           "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("lgtc: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([sys.executable, "-m", "lgtc_ros.cli", "sim", "--runtime", "--drop", "1.5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["lgtc: argument --drop: 1.5 is out of range: a probability in [0, 1] "
                                                "(see `lgtc sim --help`)"]


@pytest.mark.parametrize("argv, says", [
    (["sim", "--runtime", "--drop", "1.5"], "--drop: 1.5 is out of range"),
    (["sim", "--runtime", "--latency", "-1"], "--latency: -1 is out of range: must be >= 0"),
    (["sim", "--episodes", "0"], "--episodes: 0 is out of range"),
    (["eval", "--threads", "0"], "--threads: 0 is out of range"),
    (["sweep", "--policy", "expert", "--agents", "0", "--out", "x"], "--agents: 0 is out of range"),
    (["train", "--out", "x", "--steps", "-5"], "--steps: -5 is out of range"),
    (["sim", "--drop", "lots"], "'lots' is not a number"),
])
def test_out_of_range_options_are_one_line_exit_2(capsys, argv, says):
    fails(capsys, argv, says)


def test_two_recordings_into_one_bag(tmp_path, capsys):
    from lgtc_ros.outputs import Lock

    bag = tmp_path / "same_bag"
    with Lock(bag):  # another `lgtc sim --record same_bag` is running
        fails(capsys, ["sim", "--policy", "expert", "--record", str(bag), "--episodes", "1", "--quiet"],
              "is being written by process", "wait for it")
    assert not bag.exists()
    assert main(["sim", "--policy", "expert", "--record", str(bag), "--episodes", "1", "--quiet", "--cbf", "off"]) == 0
    assert (bag / "metadata.yaml").is_file() and (bag / "same_bag.mcap").is_file()
    fails(capsys, ["sim", "--policy", "expert", "--record", str(bag), "--episodes", "1", "--quiet"],
          "exists", "--force")
    assert main(["sim", "--policy", "random", "--record", str(bag), "--episodes", "1", "--quiet", "--cbf", "off",
                 "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same_bag"]  # no lock, no staging left


def test_sim_and_eval_refuse_to_write_over_an_output_folder(tmp_path, capsys):
    out = tmp_path / "watch"
    assert main(["sim", "--policy", "expert", "--episodes", "1", "--out", str(out), "--quiet"]) == 0
    first = (out / "summary.json").read_text()
    fails(capsys, ["sim", "--policy", "random", "--episodes", "1", "--out", str(out), "--quiet"], "exists", "--force")
    fails(capsys, ["eval", "--policy", "random", "--episodes", "1", "--out", str(out), "--quiet"], "exists")
    assert (out / "summary.json").read_text() == first
    assert main(["eval", "--policy", "random", "--episodes", "2", "--out", str(out), "--quiet", "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["episodes.csv", "summary.json", "summary.md"]  # replaced whole
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "random" and summary["threads"] == 1
    # the bag inside --out is written with it (one staged folder)
    assert main(["sim", "--policy", "expert", "--episodes", "1", "--out", str(out), "--record", str(out / "bag"),
                 "--quiet", "--force", "--cbf", "off"]) == 0
    assert (out / "bag" / "bag.mcap").is_file() and (out / "steps_episode0.csv").is_file()


def test_export_never_writes_over_a_shipped_model_and_needs_force_elsewhere(tmp_path, capsys):
    from lgtc_ros.policy.checkpoint import save_policy
    from lgtc_ros.policy.heads import ActorCritic, HeadConfig
    from lgtc_ros.policy.lgtc import LGTCConfig
    from lgtc_ros.train.ippo import Args

    torch.manual_seed(0)
    model = ActorCritic(LGTCConfig(n_resources=4, feature_dim=8, state_dim=4, hidden_dim=8), HeadConfig((16, 16)))
    policy = tmp_path / "policy.pt"
    save_policy(policy, model, Args(feature_dim=8, state_dim=4, hidden=(16, 16)), "config/scenarios/paper_10x4.yaml")
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in models_dir().iterdir()}
    for extra in ([], ["--force"]):
        fails(capsys, ["export", "--policy", str(policy), "--out", str(models_dir() / "ippo_paper_10x4.pt"), *extra],
              "shipped model", "even with --force")
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in models_dir().iterdir()} == before
    out = tmp_path / "mine.pt"
    assert main(["export", "--policy", str(policy), "--out", str(out)]) == 0
    fails(capsys, ["export", "--policy", str(policy), "--out", str(out)], "mine.pt exists", "--force")
    out.with_suffix(".json").write_text("{}")  # only the .json there is refused too
    out.unlink()
    fails(capsys, ["export", "--policy", str(policy), "--out", str(out)], "mine.json exists")
    assert main(["export", "--policy", str(policy), "--out", str(out), "--force"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["shapes"]["F"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "mine.pt", "policy.pt"]


def test_compare_refuses_an_existing_figure(tmp_path, capsys):
    log = str(models_dir() / "lgtc_paper_10x4_train_log.csv")
    png = tmp_path / "c.png"
    assert main(["compare", log, "--out", str(png)]) == 0
    fails(capsys, ["compare", log, "--out", str(png)], "c.png exists", "--force")
    assert main(["compare", log, "--out", str(png), "--force"]) == 0


# ----------------------------------------------------------------------------- training


@pytest.fixture()
def reach(tmp_path):
    path = tmp_path / "reach.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return str(path)


def train(reach, out, *extra):
    return main(["train", "--scenario", reach, "--out", str(out), "--quiet", "--set", *TINY, *extra])


def log_updates(out) -> list[int]:
    return [int(r["update"]) for r in csv.DictReader((out / "train_log.csv").open())]


def test_steps_rounding_is_said_and_threads_are_recorded(reach, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(reach, out, "--steps", "100", "--threads", "2") == 0
    said = capsys.readouterr().out
    assert "3 updates x 40 env-steps = 120 env-steps" in said and "--steps 100 rounded up to whole updates" in said
    config = json.loads((out / "config.json").read_text())
    assert config["threads"] == 2 and config["total_steps"] == 100 and log_updates(out) == [1, 2, 3]
    assert torch.get_num_threads() == 2
    fails(capsys, ["train", "--out", str(out), "--set", "threads=2"], "use --threads")
    assert main(["sim", "--episodes", "1", "--quiet", "--json"]) == 0  # every command sets its threads: 1 by default
    assert torch.get_num_threads() == 1


def test_a_rerun_without_resume_refuses_and_force_starts_over(reach, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()  # what a kill -9 before the first checkpoint leaves: a log, a config, no checkpoint
    (out / "train_log.csv").write_text("update,env_steps\n1,40\n2,80\n")
    (out / "config.json").write_text("{}")
    fails(capsys, ["train", "--scenario", reach, "--out", str(out), "--quiet"], "training log but no checkpoint",
          "--force")
    fails(capsys, ["train", "--out", str(out), "--resume", "--quiet"], "no checkpoint", "--force")
    assert train(reach, out, "--steps", "80", "--force") == 0
    assert log_updates(out) == [1, 2]  # the old rows are gone, not appended to
    fails(capsys, ["train", "--scenario", reach, "--out", str(out), "--quiet"], "already holds a run", "--resume")
    fails(capsys, ["train", "--out", str(out), "--resume", "--force"], "pass one of them")


def test_resume_refuses_contradictions_and_continues_to_the_stored_total(reach, tmp_path, capsys, monkeypatch):
    from lgtc_ros.train import ippo

    straight = tmp_path / "straight"
    assert train(reach, straight, "--steps", "160") == 0

    out = tmp_path / "run"
    real_collect = ippo.Trainer.collect

    def collect(self, on_step=None):  # Ctrl-C in the middle of update 3's rollout
        def step(n):
            if self.update == 3 and on_step_calls.append(n) is None and len(on_step_calls) == 5:
                raise KeyboardInterrupt
            if on_step:
                on_step(n)
        return real_collect(self, step)

    on_step_calls: list[int] = []
    monkeypatch.setattr(ippo.Trainer, "collect", collect)
    assert train(reach, out, "--steps", "160") == 130
    monkeypatch.setattr(ippo.Trainer, "collect", real_collect)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["update"] == 2  # the last finished update
    assert log_updates(out) == [1, 2]

    err = fails(capsys, ["train", "--out", str(out), "--resume", "--algo", "ippo", "--seed", "3", "--set",
                         "learning_rate=1e-4", "num_envs=4", "--quiet"],
                "--resume", "--algo ippo (the run: lgtc-ippo)", "--seed 3 (the run: 0)",
                "--set learning_rate=0.0001 (the run: 0.001)")
    assert "num_envs" not in err  # the same value is no contradiction
    fails(capsys, ["train", "--out", str(out), "--resume", "--scenario", "paper_10x4", "--quiet"],
          "--scenario paper_10x4 (the run: ")

    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--scenario", reach]) == 0  # no --steps: to 160
    assert "resuming at 80 env-steps" in capsys.readouterr().out
    assert log_updates(out) == [1, 2, 3, 4]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to the uninterrupted run
    assert json.loads((out / "config.json").read_text())["total_steps"] == 160

    assert main(["train", "--out", str(out), "--resume", "--quiet", "--steps", "200"]) == 0  # --steps extends
    assert log_updates(out) == [1, 2, 3, 4, 5]


def test_help_shows_defaults_and_the_algorithms(capsys):
    def helptext(*cmd):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        return " ".join(capsys.readouterr().out.split())

    sim = helptext("sim")
    assert "radio latency in extra ticks, >= 0 (runtime) (default: 0)" in sim
    assert "(default: 0.0)" in sim and "--threads" in sim and "--force" in sim
    ev = helptext("eval")
    assert "seed of the episode draws (default: 0)" in ev and "(default: expert)" in ev
    assert "(default: [5, 10, 20, 30, 50])" in helptext("sweep")
    assert "collision bench (default: 100)" in helptext("bench")
    tr = helptext("train")
    for algo in ("lgtc-ippo", "ippo", "momappo", "vdn", "qmix"):
        assert f"{algo}:" in tr or f"{algo}," in tr
    assert "LGTC-IPPO or vanilla IPPO" not in tr and "rounded up to whole updates" in tr


def test_a_second_trainer_into_one_folder_is_refused(reach, tmp_path, capsys):
    from lgtc_ros.outputs import Lock

    out = tmp_path / "run"
    with Lock(out):
        fails(capsys, ["train", "--scenario", reach, "--out", str(out), "--quiet"], "is being written by process")
    assert not out.exists()


def test_eval_progress_moves_every_step(capsys):
    from lgtc_ros.evaluate import RandomPolicy, rollout
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    scenario = load_scenario(resolve_scenario("scale_5x2"))
    ticks: list[int] = []
    rollout(scenario, RandomPolicy(0), 3, seed=0, on_step=ticks.append)
    assert ticks == [3] * scenario.episode_steps  # the bar moves at every step of the 3 parallel episodes


def test_eval_shows_progress_in_episodes(tmp_path, capsys):
    assert main(["eval", "--scenario", "scale_5x2", "--policy", "random", "--episodes", "3", "--out",
                 str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "3.0/3 episodes" in err and "Traceback" not in err


def test_ctrl_c_right_after_a_log_row_still_checkpoints_that_update(reach, tmp_path, monkeypatch):
    import os
    import signal

    from lgtc_ros.train import ippo, runner

    real_write = runner.CsvLog.write

    def write(self, row):  # Ctrl-C arrives just after update 2's row is on disk
        real_write(self, row)
        if row["update"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runner.CsvLog, "write", write)
    args = ippo.Args(scenario=reach, out=str(tmp_path / "run"), total_steps=400, num_envs=4, num_steps=10,
                     minibatch_size=8, update_epochs=1, feature_dim=8, state_dim=4, hidden=(16, 16),
                     checkpoint_every=100)
    assert ippo.Trainer(args).run() == "interrupted"
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["update"] == 2
    assert log_updates(tmp_path / "run") == [1, 2]  # log and checkpoint agree
