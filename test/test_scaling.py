"""The scaling study (lgtc_ros/scaling.py, `lgtc reproduce scaling`): why the decentralized policy
falls behind the expert as N grows."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lgtc_ros import scaling
from lgtc_ros.cli import main
from lgtc_ros.expert import CentralizedExpert
from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.world.rewards import TERMS


@pytest.fixture(scope="module")
def rows():
    base = load_scenario(resolve_scenario("paper_10x4"))
    cases = [scaling.Case("expert", lambda s: CentralizedExpert()),
             scaling.Case("expert, full radio", lambda s: CentralizedExpert(), scaling.full_range)]
    return scaling.run(base, cases, (4, 6), 4, 3, seed=11)


def test_full_range_changes_only_the_radio():
    s = load_scenario(resolve_scenario("paper_10x4"))
    f = scaling.full_range(s)
    assert f.comm_radius > 2 * np.sqrt(2)  # beyond the arena's diagonal
    assert dataclasses.replace(f, comm_radius=s.comm_radius, name=s.name) == s


def test_rows_per_case_and_n_on_the_same_episodes(rows):
    assert [(r["policy"], r["agents"]) for r in rows] == [
        ("expert", 4), ("expert, full radio", 4), ("expert", 6), ("expert, full radio", 6)]
    for r in rows:
        assert len(r["returns"]) == 3 and r["return_mean"] == pytest.approx(np.mean(r["returns"]))
        # the return is the sum of its terms
        assert sum(r[f"return_{t}"] for t in TERMS) == pytest.approx(r["return_mean"], abs=1e-9)
    # the centralized expert does not use the radio: the same episodes give the same returns
    assert rows[0]["returns"] == rows[1]["returns"] and rows[2]["returns"] == rows[3]["returns"]


def test_gap_table_splits_the_total_by_term(rows):
    shifted = [dict(r, policy="other", **{f"return_{t}": r[f"return_{t}"] - 0.1 * (k + 1) for k, t in enumerate(TERMS)},
                    return_mean=r["return_mean"] - 0.1 * sum(range(1, len(TERMS) + 1)))
               for r in rows if r["policy"] == "expert"]
    text = scaling.gap_table(rows + shifted, "other")
    line = next(ln for ln in text.splitlines() if ln.startswith("| 4 |"))
    cells = [float(c) for c in line.strip("|").split("|")[1:]]
    assert cells[0] == pytest.approx(2.8, abs=1e-3)                       # the total gap
    assert cells[1:] == pytest.approx([0.1 * (k + 1) for k in range(len(TERMS))], abs=1e-3)


def test_no_ratio_to_a_reference_within_noise_of_zero():
    ref = {"policy": "expert", "agents": 100, "return_mean": 0.05, "return_std": 1.0, "returns": [1.0, -0.9, 0.05],
           "collisions_mean": 0.0, "time_to_cover_s": 1.0, "covered_fraction": 1.0, "demand_satisfied_pct": 50.0}
    other = dict(ref, policy="LGTC-IPPO", return_mean=2.0, returns=[2.0, 2.1, 1.9])
    assert "— (expert within 3 SE of 0)" in scaling.table([other, ref])
    steady = dict(ref, returns=[1.0, 1.0, 1.0], return_mean=1.0, return_std=0.0)
    assert "| 2.000 [1.900, 2.100] |" in scaling.table([other, steady])


def test_reproduce_scaling_small_writes_report_and_plot(tmp_path):
    out = tmp_path / "scaling"
    assert main(["reproduce", "scaling", "--budget", "small", "--out", str(out), "--quiet"]) == 0
    text = (out / "README.md").read_text()
    assert "LGTC-IPPO, full radio" in text and "| 10 | LGTC-IPPO |" in text and "| 10 | expert-cbf |" in text
    assert (out / "scaling.png").stat().st_size > 10_000 and (out / "scaling.json").exists()
    (out / "README.md").unlink()
    assert main(["reproduce", "scaling", "--budget", "small", "--out", str(out), "--quiet", "--report-only"]) == 0
    assert (out / "README.md").read_text() == text


@pytest.mark.parametrize("agents", [50, 100])
def test_the_large_team_training_scenarios_are_the_sweeps_variants(agents):
    from lgtc_ros.sweep import variant

    file = load_scenario(resolve_scenario(f"paper_{agents}x4"))
    swept = variant(load_scenario(resolve_scenario("paper_10x4")), agents, 4)
    assert dataclasses.replace(file, name=swept.name, description=swept.description, source=swept.source) == swept
