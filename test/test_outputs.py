"""Safe outputs (`lgtc_ros.outputs`): refusals and --force, the shipped models folder, locks (a
second writer refused, a dead one's lock taken over), staged writes a crash or a kill -9 cannot
leave half-done, and the training-folder rules (`train.runner`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lgtc_ros.outputs import (Lock, OutputExists, OutputLocked, ProtectedOutput, atomic_write_text, check_target,
                              staged_dir, staged_files)
from lgtc_ros.policy.shipped import models_dir


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_output_refuses_what_exists_unless_forced(tmp_path):
    target = tmp_path / "run"
    with staged_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(OutputExists, match=r"run exists .*--force"):
        with staged_dir(target):
            pass
    with staged_dir(target, force=True) as tmp:  # replaced as a whole: no file of the old run stays
        (tmp / "b.txt").write_text("second")
    assert listing(target) == ["b.txt"]
    assert listing(tmp_path) == ["run"]  # no lock, no staging left behind
    (tmp_path / "empty").mkdir()
    with staged_dir(tmp_path / "empty") as tmp:  # an empty folder is not an output to protect
        (tmp / "c.txt").write_text("x")
    assert listing(tmp_path / "empty") == ["c.txt"]


def test_file_outputs_refuse_existing_files_unless_forced(tmp_path):
    target = tmp_path / "fig.png"
    with staged_files([target]) as (tmp,):
        tmp.write_text("one")
    with pytest.raises(OutputExists, match="fig.png exists"):
        with staged_files([target]):
            pass
    with staged_files([target], force=True) as (tmp,):
        tmp.write_text("two")
    assert target.read_text() == "two" and listing(tmp_path) == ["fig.png"]


def test_the_shipped_models_are_never_written_over_even_with_force(tmp_path):
    shipped = models_dir() / "lgtc_paper_10x4.pt"
    before = {p.name: p.stat().st_mtime_ns for p in models_dir().iterdir()}
    for force in (False, True):
        with pytest.raises(ProtectedOutput, match="never writes over it, even with --force"):
            check_target(shipped, force=force)
        with pytest.raises(ProtectedOutput):
            with staged_files([shipped, shipped.with_suffix(".json")], force=force):
                pass
        with pytest.raises(ProtectedOutput):
            with staged_dir(models_dir(), force=force):
                pass
        with pytest.raises(ProtectedOutput):  # nor a folder holding it
            check_target(models_dir().parent, force=True)
    # the library's export refuses too, whoever calls it
    import torch

    from lgtc_ros.policy.export import export
    from lgtc_ros.policy.heads import ActorCritic, HeadConfig
    from lgtc_ros.policy.lgtc import LGTCConfig
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    torch.manual_seed(0)
    model = ActorCritic(LGTCConfig(n_resources=4, feature_dim=8, state_dim=4, hidden_dim=8), HeadConfig((8,)))
    with pytest.raises(ProtectedOutput, match="shipped model"):
        export(model, load_scenario(resolve_scenario("paper_10x4")), shipped)
    assert {p.name: p.stat().st_mtime_ns for p in models_dir().iterdir()} == before


def test_a_lock_refuses_a_second_writer_and_is_released(tmp_path):
    target = tmp_path / "bag"
    with Lock(target):
        assert (tmp_path / ".bag.lock").is_file()
        info = json.loads((tmp_path / ".bag.lock").read_text())
        assert info["pid"] == os.getpid() and info["command"].startswith("lgtc")
        with pytest.raises(OutputLocked, match=rf"bag is being written by process {os.getpid()} .*lock file"):
            with staged_dir(target):
                pass
    assert not (tmp_path / ".bag.lock").exists()
    with staged_dir(target) as tmp:  # free again
        (tmp / "x").write_text("x")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    target = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    import socket

    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "command": "lgtc sim",
                                "started": "then"}))
    with staged_dir(target) as tmp:
        (tmp / "f").write_text("ok")
    assert "took over the lock" in capsys.readouterr().err
    assert (target / "f").read_text() == "ok" and not lock.exists()
    # a pid that runs again, but as another process (other start time): stale too
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "proc_start": "1",
                                "command": "lgtc eval", "started": "then"}))
    with staged_dir(target, force=True):
        pass
    assert "took over" in capsys.readouterr().err


def test_a_crash_inside_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "run"
    with staged_dir(target) as tmp:
        (tmp / "summary.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(target, force=True) as tmp:
            (tmp / "summary.json").write_text("new, half")
            raise RuntimeError("simulated crash")
    assert listing(target) == ["summary.json"] and (target / "summary.json").read_text() == "old"
    assert listing(tmp_path) == ["run"]
    with pytest.raises(RuntimeError):
        with staged_files([tmp_path / "a.png"]) as (tmp,):
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert listing(tmp_path) == ["run"]


def test_a_killed_run_leaves_the_target_untouched_and_the_next_run_cleans_up(tmp_path, capsys):
    target = tmp_path / "run"
    with staged_dir(target) as tmp:
        (tmp / "steps.csv").write_text("old\n")
    code = textwrap.dedent(f"""
        import os, signal
        from lgtc_ros.outputs import staged_dir
        with staged_dir({str(target)!r}, force=True) as tmp:
            (tmp / "steps.csv").write_text("new\\n")
            (tmp / "summary.json").write_text("{{}}")
            os.kill(os.getpid(), signal.SIGKILL)   # kill -9 in the middle of writing
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert listing(target) == ["steps.csv"] and (target / "steps.csv").read_text() == "old\n"
    left = listing(tmp_path)
    assert ".run.lock" in left and any(".lgtc-tmp-" in n for n in left)  # hidden leftovers only
    with staged_dir(target, force=True) as tmp:  # the next run takes the lock over and cleans the staging
        (tmp / "steps.csv").write_text("next\n")
    assert "took over" in capsys.readouterr().err
    assert listing(tmp_path) == ["run"] and (target / "steps.csv").read_text() == "next\n"


def test_atomic_write_text(tmp_path):
    path = atomic_write_text(tmp_path / "config.json", "{}\n")
    assert path.read_text() == "{}\n" and listing(tmp_path) == ["config.json"]


def test_a_training_folder_with_a_log_is_refused_and_force_starts_over(tmp_path, capsys):
    from lgtc_ros.train.runner import prepare_run_dir

    run = tmp_path / "run"
    prepare_run_dir(run)  # nothing there: fine
    run.mkdir()
    (run / "train_log.csv").write_text("update,env_steps\n1,6400\n")  # a run killed before its first checkpoint
    (run / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="training log but no checkpoint.*--force"):
        prepare_run_dir(run)
    (run / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="already holds a run .*--resume"):
        prepare_run_dir(run)
    (run / "notes.txt").write_text("mine")
    prepare_run_dir(run, force=True)
    assert listing(run) == ["notes.txt"]  # only the trainer's own files go
    assert "removed the earlier run's" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_run_dir(run)
    with pytest.raises(ProtectedOutput):
        prepare_run_dir(models_dir(), force=True)


def test_resume_conflicts_are_listed_as_options():
    from lgtc_ros.train.runner import resume_conflicts

    stored = {"algo": "lgtc-ippo", "scenario": "paper_10x4", "seed": 0, "learning_rate": 2e-4, "hidden": [256, 256],
              "total_steps": 100, "threads": 2, "out": "a"}
    same = {**stored, "scenario": "config/scenarios/paper_10x4.yaml", "hidden": (256, 256), "total_steps": 999,
            "threads": 1, "out": "b"}
    assert resume_conflicts(stored, same) == []  # the same scenario file; runtime settings may change
    other = {**same, "algo": "ippo", "learning_rate": 1e-4, "hidden": (64, 64), "scenario": "discharge_5x3"}
    assert resume_conflicts(stored, other) == ["--algo ippo (the run: lgtc-ippo)",
                                               "--scenario discharge_5x3 (the run: paper_10x4)",
                                               "--set learning_rate=0.0001 (the run: 0.0002)",
                                               "--set hidden=64,64 (the run: 256,256)"]
