"""`lgtc bench --only sim` compares our simulator with VMAS (the optional `.[peers]` extra): a row
per peer scenario at the same B and N, timed in the same process, alternating with ours; without
vmas a row says so. Tiny sizes here: no number is judged, only what the rows say."""
from __future__ import annotations

import sys

import pytest
import torch

from lgtc_ros import bench
from lgtc_ros.bench import MET, MISSED, NOT_COMPARABLE, OURS, verdict


def _sim_rows(peers):
    return bench.bench_simulator(bench.default_scenario(), batches=(4,), min_time=0.02, peers=peers)


def test_without_vmas_the_row_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "vmas", None)  # `import vmas` raises ImportError
    rows = _sim_rows(("dispersion",))
    assert [r["sim"] for r in rows] == [OURS, "vmas not installed (pip install -e '.[peers]')"]
    assert all(r["threads"] == torch.get_num_threads() and r["envs"] == 4 and r["agents"] == 10 for r in rows)
    assert verdict({**rows[1], "envs": 1024}) == NOT_COMPARABLE


def test_no_peers_no_peer_rows():
    rows = _sim_rows(())
    assert [r["sim"] for r in rows] == [OURS]
    assert rows[0]["speedup_vs_loop"] > 0 and rows[0]["threads"] == torch.get_num_threads()


def test_vmas_rows_at_the_same_batch_agents_and_threads():
    pytest.importorskip("vmas")
    rows = _sim_rows(("dispersion", "balance"))
    ours, *peers = rows
    assert ours["sim"] == OURS and [p["sim"].split()[-1] for p in peers] == ["dispersion", "balance"]
    for p in peers:
        assert p["sim"].startswith("vmas ")
        assert (p["envs"], p["agents"], p["threads"]) == (ours["envs"], ours["agents"], ours["threads"])
        assert 0 < p["ours_speedup_min"] <= p["ours_speedup"] and p["rounds"] == 15
    table = bench.format_rows(rows)
    assert "ours_speedup" in table and "vmas" in table


@pytest.mark.parametrize("row, expected", [
    ({"sim": "vmas 1.5.2 dispersion", "envs": 1024, "agents": 10, "ours_speedup": 8.4}, MET),
    ({"sim": "vmas 1.5.2 dispersion", "envs": 1024, "agents": 10, "ours_speedup": 3.0}, MISSED),
    ({"sim": "vmas 1.5.2 dispersion", "envs": 64, "agents": 10, "ours_speedup": 3.0}, NOT_COMPARABLE),
    ({"sim": "vmas 1.5.2 balance", "envs": 1024, "agents": 10, "ours_speedup": 3.0}, NOT_COMPARABLE),
])
def test_the_vmas_target_judges_dispersion_at_1024_envs(row, expected):
    row = {"bench": "simulator", "threads": 1, "agent_steps_per_s": 1e6, "ms_per_step": 10.0, **row}
    assert verdict(row) == expected


def test_readme_line_names_the_peer_and_the_settings():
    rows = [{"bench": "simulator", "sim": OURS, "envs": 1024, "agents": 10, "threads": 1,
             "agent_steps_per_s": 5e6, "ms_per_step": 2.0, "loop_agent_steps_per_s": 5e4, "speedup_vs_loop": 100.0},
            {"bench": "simulator", "sim": "vmas 1.5.2 dispersion", "envs": 1024, "agents": 10, "threads": 1,
             "agent_steps_per_s": 6e5, "ms_per_step": 17.0, "ours_speedup": 8.5, "ours_speedup_min": 7.9,
             "rounds": 15}]
    table = bench.readme_table(rows)
    line = next(x for x in table.splitlines() if "VMAS" in x)
    assert "8.5x vmas 1.5.2 dispersion (median of 15 interleaved rounds, lowest 7.9x; 17 ms per step vs ours 2 ms, " \
           "1 thread)" in line and line.endswith("| met |")
    ours = next(x for x in table.splitlines() if x.startswith("| simulator, B = 1024"))
    assert "our numpy loop" in ours and ours.endswith("| met |")
