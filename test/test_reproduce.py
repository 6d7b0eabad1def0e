"""`lgtc reproduce` on the small budget: it trains every run once, evaluates each on the same
episodes, reports mean, std across seeds and the paired comparison, redraws from its folder alone,
and extends runs to a larger step count by resuming them (not retraining them)."""
from __future__ import annotations

import numpy as np
import pytest

from lgtc_ros import reproduce as rep
from lgtc_ros.cli import main


def test_fig3_trains_evaluates_reports_and_extends_by_resuming(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "fig3"
    argv = ["reproduce", "fig3", "--budget", "small", "--methods", "LGTC-IPPO", "IPPO", "--runs", str(runs),
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    for name in ("lgtc-ippo_s1", "lgtc-ippo_s2", "ippo_s1", "ippo_s2"):
        assert (runs / "fig3" / name / "policy.pt").exists()
        assert (out / "logs" / f"{name}_train_log.csv").exists() and (out / "logs" / f"{name}_config.json").exists()
        meta, returns = rep.read_eval(out / "evals" / f"{name}.csv")
        assert meta == {"env_steps": 400, "episodes": 4, "seed": rep.EVAL_SEED} and returns.shape == (4,)
    text = (out / "README.md").read_text()
    assert "| LGTC-IPPO | 2 (1, 2) | 400 |" in text and "| IPPO | 2 (1, 2) | 400 |" in text
    assert (out / "fig3.png").stat().st_size > 10_000

    # the numbers in the table are the evaluations': mean over seeds, std across seeds, paired difference
    res = {r.label: r for r in rep.results(out)}
    finals = [rep.read_eval(out / "evals" / f"lgtc-ippo_s{s}.csv")[1].mean() for s in (1, 2)]
    assert res["LGTC-IPPO"].mean == pytest.approx(np.mean(finals))
    assert res["LGTC-IPPO"].std == pytest.approx(np.std(finals, ddof=1))
    d, _ = rep.paired(res["IPPO"].episodes, res["LGTC-IPPO"].episodes)
    assert d == pytest.approx((res["IPPO"].episodes.mean(0) - res["LGTC-IPPO"].episodes.mean(0)).mean())
    assert f"{d:+.3f}" in text

    # a rerun trains nothing; --report-only draws from the report folder alone (runs deleted)
    trained = {p: p.stat().st_mtime_ns for p in runs.glob("fig3/*/policy.pt")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.glob("fig3/*/policy.pt")} == trained
    # --steps extends by resuming: the log continues (its first rows unchanged), the evaluation follows
    first = (out / "logs" / "ippo_s1_train_log.csv").read_text().splitlines()
    assert main([*argv[:5], "IPPO", "--seeds", "1", "--steps", "600", *argv[7:]]) == 0
    longer = (out / "logs" / "ippo_s1_train_log.csv").read_text().splitlines()
    assert longer[:len(first)] == first and len(longer) > len(first)
    assert rep.read_eval(out / "evals" / "ippo_s1.csv")[0]["env_steps"] == 600
    capsys.readouterr()
    import shutil

    shutil.rmtree(runs)
    assert main(argv) == 0 and not runs.exists()  # a fresh clone: the report folder says they are done
    assert main([*argv, "--report-only"]) == 0
    assert "| IPPO | 2 (1, 2) | 400-600 |" in capsys.readouterr().out


def test_report_only_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="train first"):
        main(["reproduce", "fig3", "--budget", "small", "--out", str(tmp_path / "empty"), "--report-only", "--quiet"])


def test_ratio_interval_covers_the_ratio_and_narrows_with_episodes():
    rng = np.random.default_rng(0)
    b = rng.normal(6.0, 1.5, 400)
    a = 0.9 * b + rng.normal(0, 0.2, 400)
    r, lo, hi = rep.ratio_ci(a, b)
    assert lo < r < hi and lo < 0.9 < hi
    r30, lo30, hi30 = rep.ratio_ci(a[:30], b[:30])
    assert hi30 - lo30 > hi - lo


def test_radius_scenarios_change_only_the_radius(tmp_path):
    from lgtc_ros.scenario import load_scenario, resolve_scenario

    base = load_scenario(resolve_scenario("paper_10x4"))
    assert rep.radius_scenario(base.comm_radius, tmp_path) == "paper_10x4"
    half = load_scenario(resolve_scenario(rep.radius_scenario(0.5, tmp_path)))
    assert half.comm_radius == 0.5 and half.name == "paper_10x4_c0.5"
    import dataclasses

    assert dataclasses.replace(half, comm_radius=base.comm_radius, name=base.name, source=base.source) == base


def test_ablations_train_evaluate_and_report_each_study(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "abl"
    argv = ["reproduce", "ablations", "--budget", "small", "--runs", str(runs), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    # the baseline is Fig. 3's first LGTC-IPPO run; alpha = 0 and the two other radii are their own runs
    assert (runs / "fig3" / "lgtc-ippo_s1" / "policy.pt").exists()
    for name in ("lgtc-ippo-alpha0_s1", "lgtc-ippo-c0.5_s1", "lgtc-ippo-c2_s1"):
        assert (runs / "ablations" / name / "policy.pt").exists() and (out / "evals" / f"{name}.csv").exists()
    config = (out / "logs" / "lgtc-ippo-alpha0_s1_config.json").read_text()
    assert '"alpha": 0.0' in config
    assert "paper_10x4_c0.5.yaml" in (out / "logs" / "lgtc-ippo-c0.5_s1_config.json").read_text()
    cells = rep._read_csv(out / "radius.csv")
    assert {(c["trained"], c["evaluated"]) for c in cells} == {(a, b) for a in ("0.5", "1", "2") for b in ("0.5", "1", "2")}
    states = rep._read_json(out / "alpha_states.json")
    assert len(states) == 2 and all(0 <= s["frac_abs_gt_1"] <= 1 for s in states.values())
    disc = rep._read_json(out / "discharge.json")["rows"]
    assert sorted((r["policy"], r["seed"]) for r in disc) == [("LGTC-IPPO", 0), ("LGTC-IPPO", 1), ("expert", 0), ("expert", 1)]
    text = (out / "README.md").read_text()
    for section in ("## Contractivity penalty off", "## Communication radius C", "## The discharge mission over seeds"):
        assert section in text
    assert "Not trained yet" not in text and "—" not in text.split("## Communication radius C")[1].split("##")[0]
    # redrawn from the folder: the same report, nothing recomputed
    stamp = (out / "radius.csv").stat().st_mtime_ns
    assert main([*argv, "--report-only"]) == 0
    assert (out / "radius.csv").stat().st_mtime_ns == stamp and (out / "README.md").read_text() == text
