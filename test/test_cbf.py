"""CBF safety filter: pass-through when safe, agreement with the cvxpy reference, speed and arena
bounds, discrete-time safety under adversarial commands (hypothesis), fallbacks, in-place updates."""
from __future__ import annotations

import logging

import numpy as np
import osqp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgtc_ros.safety import (
    CBFStats,
    bench_cbf,
    cbf_qp_cvxpy,
    make_centralized_filter,
    make_decentralized_filter,
)
from lgtc_ros.safety.cbf import random_safe_positions

D, V, DT = 0.1, 0.5, 0.05
# OSQP runs to eps 1e-3 and then polishes (exact active-set solve); when polishing cannot identify
# the active set the ADMM solution is kept, so agreement is to the ADMM tolerance.
TOL = 3e-3


def others(pos: np.ndarray, i: int, radius: float = np.inf) -> np.ndarray:
    """Positions [K, 2] of the drones other than i within `radius` of drone i."""
    nb = np.delete(pos, i, axis=0)
    return nb[np.hypot(*(nb - pos[i]).T) <= radius]


def toward(pos: np.ndarray, target: np.ndarray, speed: float) -> np.ndarray:
    """Velocities [N, 2] of magnitude `speed` from pos [N, 2] toward target [N, 2] (0 if there)."""
    d = target - pos
    n = np.linalg.norm(d, axis=1, keepdims=True)
    return np.where(n > 1e-9, speed * d / np.maximum(n, 1e-9), 0.0)


def adversarial_instance(rng: np.random.Generator, n: int, half: float = 0.4) -> tuple[np.ndarray, ...]:
    """(u_nom [n, 2] at v_max toward the nearest drone, safe positions [n, 2] packed in ±half)."""
    pos = random_safe_positions(rng, n, D, half)
    dd = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    np.fill_diagonal(dd, np.inf)
    return toward(pos, pos[np.argmin(dd, axis=1)], V), pos


# ----------------------------------------------------------------------------- pass-through


def test_safe_command_passes_unchanged():
    pos = np.array([[-0.5, -0.5], [0.5, -0.5], [0.0, 0.5]])
    u_nom = np.array([[0.05, 0.0], [0.0, 0.05], [-0.03, -0.02]])
    dec = make_decentralized_filter(D, V)
    for i in range(3):
        np.testing.assert_allclose(dec(u_nom[i], pos[i], others(pos, i)), u_nom[i], atol=1e-6)
    cen = make_centralized_filter(3, D, V)
    np.testing.assert_allclose(cen(u_nom, pos), u_nom, atol=1e-6)
    assert dec.stats.solved == 3 and cen.stats.solved == 1 and dec.stats.fallback == cen.stats.fallback == 0


# ----------------------------------------------------------------------------- cvxpy reference


def test_decentralized_matches_cvxpy():
    rng = np.random.default_rng(0)
    dec = make_decentralized_filter(D, V)
    errors = []
    for _ in range(12):
        u_nom, pos = adversarial_instance(rng, 6)
        u_nom += rng.normal(0, 0.2, u_nom.shape)  # not only head-on
        ref = cbf_qp_cvxpy(u_nom, pos, D, V, decentralized=True)
        errors += [np.abs(dec(u_nom[i], pos[i], others(pos, i)) - ref[i]).max() for i in range(6)]
    assert max(errors) < TOL
    assert np.median(errors) < 1e-6  # polished: exact in the typical case
    assert dec.stats.fallback == 0


def test_centralized_matches_cvxpy_with_inactive_drones():
    rng = np.random.default_rng(1)
    n = 10
    cen = make_centralized_filter(n, D, V)
    errors = []
    for k in range(8):
        u_nom, pos = adversarial_instance(rng, n)
        active = np.ones(n, dtype=bool) if k % 2 == 0 else rng.random(n) < 0.7
        ref = cbf_qp_cvxpy(u_nom, pos, D, V, active=active)
        out = cen(u_nom, pos, active)
        assert np.all(out[~active] == 0.0)
        errors.append(np.abs(out - ref).max())
    assert max(errors) < TOL and np.median(errors) < 1e-6
    assert cen.stats.fallback == 0


def test_public_osqp_path_gives_the_same_answer():
    rng = np.random.default_rng(2)
    fast, slow = make_decentralized_filter(D, V), make_decentralized_filter(D, V, fast_path=False)
    for _ in range(10):
        u_nom, pos = adversarial_instance(rng, 5)
        a, b = fast(u_nom[0], pos[0], pos[1:]), slow(u_nom[0], pos[0], pos[1:])
        np.testing.assert_allclose(a, b, atol=1e-9)


# ----------------------------------------------------------------------------- bounds


def test_speed_and_arena_bounds():
    rng = np.random.default_rng(3)
    dec = make_decentralized_filter(D, V)
    cen = make_centralized_filter(8, D, V)
    lim, g = dec.limit, dec.gamma_arena
    for _ in range(20):
        pos = random_safe_positions(rng, 8, D, lim)  # up to the walls
        u_nom = rng.normal(0, 3 * V, (8, 2))  # much too fast, many straight into a wall
        outs = [np.array([dec(u_nom[i], pos[i], others(pos, i)) for i in range(8)]), cen(u_nom, pos)]
        for out in outs:
            assert np.hypot(*out.T).max() <= V * (1 + 1e-12)
            assert np.all(out <= g * (lim - pos) + 2e-3) and np.all(-out <= g * (lim + pos) + 2e-3)
            assert np.abs(pos + DT * out).max() <= lim + 1e-4
    assert dec.stats.fallback == cen.stats.fallback == 0


# ----------------------------------------------------------------------------- property: discrete-time safety


def _commands(mode: str, pos: np.ndarray) -> np.ndarray:
    n = len(pos)
    if mode == "pursuit":  # each drone flies straight at the next one
        return toward(pos, pos[(np.arange(n) + 1) % n], V)
    if mode == "centroid":
        return toward(pos, np.repeat(pos.mean(0, keepdims=True), n, 0), V)
    return toward(pos, 10 * (pos - pos.mean(0)), V)  # "scatter": straight into the walls


def _min_pair_distance(pos: np.ndarray) -> float:
    dd = np.hypot(*(pos[:, None] - pos[None]).transpose(2, 0, 1))
    np.fill_diagonal(dd, np.inf)
    return float(dd.min())


@settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 8), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["pursuit", "centroid", "scatter"]), radius=st.sampled_from([0.1, 0.2]),
       tight=st.booleans())
def test_adversarial_swarm_stays_safe(n, seed, mode, radius, tight):
    rng = np.random.default_rng(seed)
    lim = 1.0 - radius / 2
    start = random_safe_positions(rng, n, radius, lim)
    if tight:  # squeeze about the centroid until the closest pair touches: h = 0 at the start
        c = start.mean(0)
        start = c + (start - c) * (radius / _min_pair_distance(start))
    floor = radius - V * DT
    decs = [make_decentralized_filter(radius, V) for _ in range(n)]
    cen = make_centralized_filter(n, radius, V)
    for form in ("decentralized", "centralized"):
        pos = start.copy()
        for _ in range(200):
            u_nom = _commands(mode, pos)
            if form == "decentralized":  # every drone sees the others within 1.0 (its radio range)
                u = np.array([decs[i](u_nom[i], pos[i], others(pos, i, 1.0)) for i in range(n)])
            else:
                u = cen(u_nom, pos)
            pos = pos + DT * u
            assert _min_pair_distance(pos) >= floor, form
            assert np.abs(pos).max() <= lim + 1e-4, form
    # a fallback brakes (safe, checked above); they must stay rare: OSQP stalls only in degenerate jams
    assert sum(f.stats.fallback for f in decs) <= 0.01 * 200 * n and cen.stats.fallback <= 2


# ----------------------------------------------------------------------------- fallbacks


def test_nan_input_brakes_and_is_counted(caplog):
    dec = make_decentralized_filter(D, V)
    with caplog.at_level(logging.WARNING, logger="lgtc_ros.safety"):
        out = dec(np.array([np.nan, 0.1]), np.zeros(2), np.array([[0.5, 0.0]]))
        out2 = dec(np.array([0.1, 0.1]), np.zeros(2), np.array([[0.5, np.nan]]))
    assert np.all(out == 0) and np.all(out2 == 0)
    assert dec.stats.nonfinite == 2 and dec.stats.fallback == dec.stats.brake == 2 and dec.stats.solved == 0
    assert any(r.name == "lgtc_ros.safety" for r in caplog.records)

    cen = make_centralized_filter(3, D, V)
    pos = np.array([[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0]])
    u_nom = np.array([[np.nan, 0.0], [0.1, 0.0], [0.0, 0.1]])
    out = cen(u_nom, pos)
    assert np.all(out[0] == 0) and np.allclose(out[1:], u_nom[1:], atol=1e-6)  # the rest still move
    assert cen.stats.nonfinite == 1 and cen.stats.fallback == 1 and cen.stats.brake == 1
    assert cen.last_fallback.tolist() == [True, False, False]
    pos[2, 1] = np.inf
    assert np.all(cen(np.zeros((3, 2)), pos) == 0) and cen.stats.nonfinite == 2 and cen.stats.fallback == 2
    assert cen.stats.brake == 4 and cen.last_fallback.all()


def test_squeezed_between_wall_and_drone_is_infeasible():
    dec = make_decentralized_filter(D, V, agent_index=0)
    lim = dec.limit
    # just outside the wall (must move in) with a drone too close on the inside (must move out):
    # the evasion holds the distance to the wall (no further out) and gives up nothing toward the drone
    out = dec(np.array([-0.2, 0.0]), np.array([lim + 0.01, 0.0]), np.array([[lim - 0.06, 0.0]]))
    assert np.abs(out).max() < 1e-9 and dec.fell_back
    assert dec.stats.infeasible == 1 and dec.stats.evade == dec.stats.fallback == 1 and dec.stats.brake == 0
    # coincident drones: no normal exists; full speed along the pseudo-normal of agent 0 (+x)
    np.testing.assert_allclose(dec(np.array([0.1, 0.0]), np.zeros(2), np.zeros((1, 2))), [V, 0.0], atol=1e-9)
    assert dec.stats.infeasible == 2 and dec.stats.evade == dec.stats.fallback == 2
    assert cbf_qp_cvxpy(np.array([[-0.2, 0.0], [0.0, 0.0]]), np.array([[lim + 0.01, 0.0], [lim - 0.06, 0.0]]),
                        D, V, decentralized=True) is None

    cen = make_centralized_filter(2, D, V)
    pos = np.array([[lim + 0.3, 0.0], [0.0, 0.0]])  # would need 3 units/s to get back in: > v_max
    out = cen(np.zeros((2, 2)), pos)
    assert -V <= out[0, 0] < -0.3 and abs(out[0, 1]) < 1e-9  # back in (beyond the arena edge)
    assert np.abs(out[1]).max() < 1e-9  # not in conflict: its per-drone QP, here u_nom = 0
    assert cen.last_fallback.tolist() == [True, False]
    assert cen.stats.infeasible == 1 and cen.stats.fallback == 1 and cen.stats.evade == 1 and cen.stats.brake == 0
    assert cbf_qp_cvxpy(np.zeros((2, 2)), pos, D, V) is None


def test_programming_errors_raise():
    dec = make_decentralized_filter(D, V)
    with pytest.raises(ValueError):
        dec(np.zeros(3), np.zeros(2), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        dec(np.zeros(2), np.zeros(2), np.zeros(2))
    cen = make_centralized_filter(3, D, V)
    with pytest.raises(ValueError):
        cen(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        cen(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3))  # active must be bool
    with pytest.raises(ValueError):
        make_decentralized_filter(D, V, gamma=30.0)  # gamma * dt > 1: no discrete-time guarantee
    with pytest.raises(ValueError):
        make_centralized_filter(3, D, V, margin=2.0)
    assert dec.stats == CBFStats() and cen.stats == CBFStats()


# ----------------------------------------------------------------------------- in-place updates


def test_problem_is_set_up_once_and_updated_in_place(monkeypatch):
    rng = np.random.default_rng(4)
    dec = make_decentralized_filter(D, V, max_neighbours=6)
    cen = make_centralized_filter(6, D, V)
    solvers = (dec.solver, cen.solver, dec.evasion_solver, cen.fallback_filter.solver)
    setups = []  # any later OSQP setup (a rebuilt problem) would be recorded here
    monkeypatch.setattr(osqp.OSQP, "setup", lambda *a, **k: setups.append(1))
    for k in range(60):
        pos = random_safe_positions(rng, 12, D, 0.5)
        u_nom = rng.normal(0, V, (12, 2))
        dec(u_nom[0], pos[0], pos[1:1 + k % 12])  # K = 0 .. 11, beyond max_neighbours too
        cen(u_nom[:6], pos[:6], rng.random(6) < 0.8)
    assert dec.stats.solved == 60 and cen.stats.solved == 60
    for k in range(20):  # the fallbacks: evasion (coincident, jammed) and the centralized per-drone filters
        pos = rng.uniform(-0.02, 0.02, (6, 2))
        pos[1] = pos[0]
        dec(u_nom[0], pos[0], pos[1:], np.full(5, 0.01 * k))
        cen(u_nom[:6], pos, None, np.full(6, 0.005 * k))
    assert dec.stats.evade == 20 and cen.stats.fallback == 20
    assert not setups and (dec.solver, cen.solver, dec.evasion_solver, cen.fallback_filter.solver) == solvers


def test_keeps_the_nearest_neighbours():
    rng = np.random.default_rng(5)
    capped = make_decentralized_filter(D, V, max_neighbours=4)
    for _ in range(10):
        u_nom, pos = adversarial_instance(rng, 10, half=0.3)
        nb = pos[1:]
        nearest = nb[np.argsort(np.hypot(*(nb - pos[0]).T))[:4]]
        ref = cbf_qp_cvxpy(np.vstack([u_nom[:1], np.zeros((4, 2))]), np.vstack([pos[:1], nearest]), D, V,
                           decentralized=True, active=np.arange(5) == 0)
        np.testing.assert_allclose(capped(u_nom[0], pos[0], nb), ref[0], atol=TOL)


def test_bench_rows():
    rows = bench_cbf(n_calls=22, cvxpy_calls=1)
    assert [(r["form"], r["scenario"]) for r in rows] == [("decentralized", "swarm"), ("decentralized", "random"),
                                                          ("centralized", "swarm"), ("centralized", "random")]
    assert rows[0]["agents"] == 1 and rows[0]["neighbours"] == 10 and rows[2]["agents"] == 50
    assert all(r["p99_ms"] >= r["p50_ms"] > 0 and r["ratio"] > 0 and r["fallbacks"] == 0 for r in rows)


def test_a_ctrl_c_that_osqp_caught_during_a_solve_reaches_the_process(monkeypatch):
    """OSQP has its own SIGINT handler while it solves and returns status OSQP_SIGINT; the signal
    is handed back (a CBF node had swallowed Ctrl-C and kept spinning)."""
    import signal
    import types

    import scipy.sparse as sp

    from lgtc_ros.safety.cbf import DEFAULT_OSQP_SETTINGS, _Qp

    qp = _Qp(sp.csc_matrix(np.eye(2)), dict(DEFAULT_OSQP_SETTINGS), fast_path=True)
    assert qp._ext is not None
    interrupted = types.SimpleNamespace(
        update_data_vec=lambda **k: None, update_data_mat=lambda **k: None, solve=lambda: None,
        info=types.SimpleNamespace(status_val=int(osqp.SolverStatus.OSQP_SIGINT)),
        solution=types.SimpleNamespace(x=np.zeros(3)))
    qp._ext = interrupted
    got = []
    previous = signal.signal(signal.SIGINT, lambda *_: got.append("SIGINT"))
    try:
        x, status = qp.solve()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert x is None and status == int(osqp.SolverStatus.OSQP_SIGINT) and got == ["SIGINT"]
    qp._ext = None                        # a normal solve hands nothing back
    got.clear()
    previous = signal.signal(signal.SIGINT, lambda *_: got.append("SIGINT"))
    try:
        x, status = qp.solve()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert x is not None and got == []
