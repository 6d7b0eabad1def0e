"""Deployment code (runtime, nodes, policy loading) never imports training code, and a node
process imports only what it runs: each case is a fresh interpreter whose `sys.modules` we read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TRAINING = ["lgtc_ros.train", "lgtc_ros.cli"]
# the simulator, evaluation, the expert's MIQP, the CBF's QP solver, plotting
HEAVY = ["lgtc_ros.world", "lgtc_ros.evaluate", "lgtc_ros.expert", "lgtc_ros.assignment", "osqp", "cvxpy",
         "pyscipopt", "matplotlib"]


def loaded_after(code: str) -> set[str]:
    """Top-level packages and lgtc_ros modules in sys.modules after running `code` in a fresh python."""
    probe = (f"{code}\nimport json, sys\n"
             "print('MODULES=' + json.dumps(sorted(sys.modules)))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # `-c` in ROOT: this source tree comes first on sys.path
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES="))
    return set(json.loads(line[len("MODULES="):]))


def offenders(modules: set[str], banned: list[str]) -> list[str]:
    """The banned packages present (a package counts when it or any of its submodules is loaded)."""
    return sorted(b for b in banned if any(m == b or m.startswith(b + ".") for m in modules))


def test_onboard_controller_loads_no_training_simulator_or_solvers():
    mods = loaded_after("import lgtc_ros.runtime.onboard")
    assert offenders(mods, TRAINING + HEAVY) == []
    assert "lgtc_ros.runtime.swarm" not in mods


def test_radio_loads_not_even_torch():
    mods = loaded_after("import lgtc_ros.runtime.radio")
    assert offenders(mods, TRAINING + HEAVY + ["torch", "lgtc_ros.runtime.swarm", "lgtc_ros.runtime.drone"]) == []


def test_runtime_package_imports_nothing_itself():
    mods = loaded_after("import lgtc_ros.runtime")
    assert offenders(mods, TRAINING + HEAVY + ["torch"] + [f"lgtc_ros.runtime.{m}" for m in
                                                            ("drone", "onboard", "plant", "radio", "swarm")]) == []


def test_policy_loading_and_model_lookup_load_no_training_code():
    mods = loaded_after("import lgtc_ros.policy.learned, lgtc_ros.policy.checkpoint")
    assert offenders(mods, TRAINING + HEAVY) == []
    # the lookup reads JSON only: a node can ask it without paying for torch
    mods = loaded_after("from lgtc_ros.policy.shipped import default_model\n"
                        "assert default_model('discharge_5x3').name == 'lgtc_discharge_5x3.pt'")
    assert offenders(mods, TRAINING + HEAVY + ["torch"]) == []


@dataclass
class _Args:  # the fields of a trainer's Args that rebuild the networks
    algo: str = "lgtc-ippo"
    scenario: str = "discharge_5x3"
    feature_dim: int = 8
    state_dim: int = 8
    hidden: tuple[int, ...] = (16, 16)
    unfolds: int = 1
    ode_dt: float = 0.5


def test_loading_models_in_a_drone_process_loads_no_training_code(tmp_path):
    """An exported model through the runtime, and a trainer's policy.pt / checkpoint.pt through
    LearnedPolicy: none imports lgtc_ros.train."""
    from dataclasses import asdict

    from lgtc_ros.policy.checkpoint import build_model, save_checkpoint, save_policy
    from lgtc_ros.scenario import resolve_scenario

    args = _Args()
    model = build_model(args, 4)
    save_policy(tmp_path / "policy.pt", model, args, str(resolve_scenario(args.scenario)))
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {"args": asdict(args), "model": model.state_dict(),
                                                          "update": 1})
    mods = loaded_after(
        "from lgtc_ros.runtime.drone import load_drone_modules\n"
        "from lgtc_ros.policy.learned import LearnedPolicy\n"
        "from lgtc_ros.scenario import load_scenario, resolve_scenario\n"
        "s = load_scenario(resolve_scenario('discharge_5x3'))\n"
        "(m,), meta = load_drone_modules('models/lgtc_discharge_5x3.pt', s, 1)\n"
        "assert meta['scenario']['name'] == 'discharge_5x3'\n"
        f"p = LearnedPolicy.load({str(tmp_path / 'policy.pt')!r}, s)\n"
        f"c = LearnedPolicy.load({str(tmp_path / 'run' / 'checkpoint.pt')!r}, s)\n"
        "assert p.step.v_max == c.step.v_max == s.v_max and c.step.state_dim == 8")
    assert offenders(mods, TRAINING + HEAVY) == []


@pytest.mark.parametrize("module", ["lgtc_ros.train.ippo", "lgtc_ros.train.runner", "lgtc_ros.train.sac_mix"])
def test_the_checkpoint_format_has_one_home(module):
    """The trainers use policy.checkpoint's functions instead of keeping copies."""
    import importlib

    from lgtc_ros.policy import checkpoint

    mod = importlib.import_module(module)
    for name in ("save_checkpoint", "load_checkpoint", "save_policy", "load_policy", "build_model"):
        if hasattr(mod, name):
            assert getattr(mod, name) is getattr(checkpoint, name), f"{module}.{name} is a copy"
