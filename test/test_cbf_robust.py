"""CBF under pose uncertainty and its fallback: per-pair clearance (exactly today's filter when zero,
agreement with cvxpy otherwise), true separation from measured positions (hypothesis), the evasion
fallback against a pursuer, in a jam and for coincident drones, counters, rate-limited logs, and the
swarm wrapper's per-drone fallback flags."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgtc_ros.safety import SwarmFilter, cbf_qp_cvxpy, make_centralized_filter, make_decentralized_filter
from lgtc_ros.safety.cbf import random_safe_positions
from lgtc_ros.scenario import load_scenario, resolve_scenario

D, V, DT = 0.1, 0.5, 0.05
TOL = 3e-3  # agreement with cvxpy, as in test_cbf.py


def pair_distances(pos: np.ndarray) -> np.ndarray:
    dd = np.hypot(*(pos[:, None] - pos[None]).transpose(2, 0, 1))
    np.fill_diagonal(dd, np.inf)
    return dd


def toward(pos: np.ndarray, target: np.ndarray, speed: float) -> np.ndarray:
    d = target - pos
    n = np.linalg.norm(d, axis=1, keepdims=True)
    return np.where(n > 1e-9, speed * d / np.maximum(n, 1e-9), 0.0)


def place(rng: np.random.Generator, unc: np.ndarray, radius: float, half: float) -> np.ndarray:
    """Positions [n, 2] in ±half with |p_i − p_j| ≥ radius + unc_i + unc_j (rejection sampling)."""
    pts: list[np.ndarray] = []
    for _ in range(200_000):
        c = rng.uniform(-half, half, 2)
        k = len(pts)
        if all(np.hypot(*(c - pts[j])) >= radius + unc[k] + unc[j] for j in range(k)):
            pts.append(c)
            if len(pts) == len(unc):
                return np.array(pts)
    raise ValueError("could not place the drones")


def filter_all(filters, u_nom: np.ndarray, pos: np.ndarray, unc: np.ndarray | None) -> np.ndarray:
    """Every drone through its own decentralized filter, all others as neighbours."""
    n = len(pos)
    out = np.empty((n, 2))
    for i in range(n):
        others = np.arange(n) != i
        out[i] = filters[i](u_nom[i], pos[i], pos[others], None if unc is None else unc[i] + unc[others])
    return out


# ----------------------------------------------------------------------------- clearance: API and exactness


def test_zero_clearance_gives_exactly_todays_answers():
    rng = np.random.default_rng(0)
    n = 6
    plain, zero = [make_decentralized_filter(D, V) for _ in range(n)], [make_decentralized_filter(D, V) for _ in range(n)]
    cen_plain, cen_zero = make_centralized_filter(n, D, V), make_centralized_filter(n, D, V)
    pos = random_safe_positions(rng, n, D, 0.3)
    for _ in range(30):  # closed loop: the warm starts must stay identical too
        u_nom = toward(pos, pos[(np.arange(n) + 1) % n], V) + rng.normal(0, 0.1, (n, 2))
        a, b = filter_all(plain, u_nom, pos, None), filter_all(zero, u_nom, pos, np.zeros(n))
        assert np.array_equal(a, b)
        assert np.array_equal(cen_plain(u_nom, pos), cen_zero(u_nom, pos, None, np.zeros(n)))
        pos = pos + DT * a
    assert all(f.stats == g.stats for f, g in zip(plain, zero)) and cen_plain.stats == cen_zero.stats


def test_clearance_matches_cvxpy():
    rng = np.random.default_rng(1)
    n = 6
    dec, cen = make_decentralized_filter(D, V), make_centralized_filter(n, D, V)
    errors = {"decentralized": [], "centralized": []}
    for k in range(10):
        unc = rng.uniform(0, 0.04, n) * (rng.random(n) < 0.8)
        pos = place(rng, unc, D, 0.45)
        c = pos[np.argmin(pair_distances(pos) - unc[:, None] - unc[None], axis=1)]
        u_nom = toward(pos, c, V) + rng.normal(0, 0.2, (n, 2))  # mostly at the neighbour with least room
        ref = cbf_qp_cvxpy(u_nom, pos, D, V, decentralized=True, uncertainty=unc)
        got = filter_all([dec] * n, u_nom, pos, unc)
        errors["decentralized"].append(np.abs(got - ref).max())
        active = np.ones(n, dtype=bool) if k % 2 else rng.random(n) < 0.7
        ref = cbf_qp_cvxpy(u_nom, pos, D, V, active=active, uncertainty=unc)
        errors["centralized"].append(np.abs(cen(u_nom, pos, active, unc) - ref).max())
    for form, e in errors.items():  # the swarm QP stops at 400 ADMM iterations: a rare unpolished answer
        assert max(e) < (TOL if form == "decentralized" else 2 * TOL) and np.median(e) < 1e-6, form
    assert dec.stats.fallback == cen.stats.fallback == 0


def test_bad_clearance():
    dec = make_decentralized_filter(D, V)
    with pytest.raises(ValueError):
        dec(np.zeros(2), np.zeros(2), np.ones((2, 2)), np.array([0.1]))  # one clearance per neighbour
    with pytest.raises(ValueError):
        dec(np.zeros(2), np.zeros(2), np.ones((1, 2)), np.array([-0.1]))
    out = dec(np.array([0.1, 0.0]), np.zeros(2), np.ones((1, 2)), np.array([np.inf]))
    assert np.all(out == 0) and dec.stats.nonfinite == dec.stats.brake == dec.stats.fallback == 1
    cen = make_centralized_filter(3, D, V)
    with pytest.raises(ValueError):
        cen(np.zeros((3, 2)), np.eye(3, 2), None, np.array([0.0, -1.0, 0.0]))
    out = cen(np.ones((3, 2)) * 0.1, np.eye(3, 2), None, np.array([0.0, np.nan, 0.0]))
    assert np.all(out == 0) and cen.stats.nonfinite == 1 and cen.stats.brake == 3 and cen.last_fallback.all()


def test_clearance_stops_an_approach_the_plain_filter_allows():
    """Measured 2u farther apart than they are: the plain filter lets them close in below D."""
    u = 0.05
    p_hat = np.array([[-(D / 2 + u), 0.0], [D / 2 + u, 0.0]])
    p_true = p_hat + np.array([[u, 0.0], [-u, 0.0]])  # each within u of its measurement, exactly D apart
    u_nom = np.array([[V, 0.0], [-V, 0.0]])
    for unc, ok in ((None, False), (np.full(2, u), True)):
        filters = [make_decentralized_filter(D, V) for _ in range(2)]
        after = p_true + DT * filter_all(filters, u_nom, p_hat, unc)
        assert (np.hypot(*(after[0] - after[1])) >= D - 1e-9) == ok


# ----------------------------------------------------------------------------- property: true separation


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 8), seed=st.integers(0, 2**32 - 1), radius=st.sampled_from([0.1, 0.2]),
       max_unc=st.sampled_from([0.0, 0.02, 0.08]), tight=st.booleans(),
       error=st.sampled_from(["random", "inward"]), mode=st.sampled_from(["pursuit", "random", "centroid"]))
def test_true_positions_stay_apart(n, seed, radius, max_unc, tight, error, mode):
    """True positions p, measurements p̂ with |p̂_i − p_i| ≤ u_i, measured pairs ≥ D + u_i + u_j apart:
    filtering on (p̂, u) and flying the commands from p for dt keeps every true pair ≥ D (both forms)."""
    rng = np.random.default_rng(seed)
    unc = rng.uniform(0, max_unc, n) * (rng.random(n) < 0.8)
    lim = 1.0 - radius / 2
    p_hat = place(rng, unc, radius, 0.8 * lim)
    if tight:  # squeeze about the centroid until the tightest pair touches its inflated radius
        c = p_hat.mean(0)
        room = pair_distances(p_hat) / (radius + unc[:, None] + unc[None])
        p_hat = c + (p_hat - c) / room.min()
    if error == "inward":  # every error points at the measured nearest neighbour: true pairs closest
        nearest = p_hat[np.argmin(pair_distances(p_hat), axis=1)]
        e = toward(p_hat, nearest, 1.0) * unc[:, None]
    else:
        ang = rng.uniform(0, 2 * np.pi, n)
        e = np.c_[np.cos(ang), np.sin(ang)] * (unc * rng.uniform(0.5, 1.0, n))[:, None]
    p_true = p_hat + e
    assert pair_distances(p_true).min() >= radius - 1e-12
    if mode == "pursuit":  # every drone flies at v_max at its true nearest neighbour
        u_nom = toward(p_true, p_true[np.argmin(pair_distances(p_true), axis=1)], V)
    elif mode == "centroid":
        u_nom = toward(p_true, np.repeat(p_true.mean(0, keepdims=True), n, 0), V)
    else:
        u_nom = rng.normal(0, V, (n, 2))
    decs = [make_decentralized_filter(radius, V) for _ in range(n)]
    cen = make_centralized_filter(n, radius, V)
    for form, u in (("decentralized", filter_all(decs, u_nom, p_hat, unc)), ("centralized", cen(u_nom, p_hat, None, unc))):
        assert np.hypot(*u.T).max() <= V * (1 + 1e-12)
        assert pair_distances(p_true + DT * u).min() >= radius - 1e-4, form


# ----------------------------------------------------------------------------- the evasion fallback


def test_evader_keeps_its_distance_from_a_pursuer():
    """Inside the inflated radius (infeasible), a neighbour flying straight at the drone at v_max:
    the evasion (full speed away) never loses distance; braking (the old fallback) loses v_max dt a step."""
    clearance = np.array([0.2])  # D' = 0.3, measured 0.158: must open at > v_max, infeasible
    dec = make_decentralized_filter(D, V)
    evader, pursuer = np.array([0.0, 0.0]), np.array([0.15, 0.05])
    braked_gap = start = float(np.hypot(*(evader - pursuer)))
    gaps = [start]
    for _ in range(20):
        u = dec(np.array([0.3, 0.1]), evader, pursuer[None], clearance)  # u_nom: toward the pursuer
        away = (evader - pursuer) / np.hypot(*(evader - pursuer))
        np.testing.assert_allclose(u, V * away, atol=1e-9)  # full speed straight away
        evader, pursuer = evader + DT * u, pursuer + DT * V * away
        gaps.append(float(np.hypot(*(evader - pursuer))))
        braked_gap -= V * DT  # u = 0 against the same pursuer
    assert np.diff(gaps).min() >= -1e-9 and gaps[-1] >= start - 1e-9
    assert braked_gap < 0  # braking: the pursuer would have flown through the drone
    assert dec.stats.evade == dec.stats.infeasible == dec.stats.fallback == 20 and dec.stats.brake == 0


@pytest.mark.parametrize("n", [6, 7, 8])
def test_jam_unpacks(n):
    """n drones packed much closer than D, every command at the centre, every drone its own filter:
    within a bounded number of steps every pair is ≥ D and stays so; never NaN, never a brake."""
    rng = np.random.default_rng(n)
    for pos in (rng.uniform(-0.03, 0.03, (n, 2)), np.zeros((n, 2))):  # random, and all coincident
        filters = [make_decentralized_filter(D, V, agent_index=i) for i in range(n)]
        reached = None
        for step in range(100):
            u_nom = toward(pos, np.zeros_like(pos), V)
            u = filter_all(filters, u_nom, pos, None)
            assert np.isfinite(u).all()
            pos = pos + DT * u
            gap = pair_distances(pos).min()
            if reached is None and gap >= D * (1 - 1e-3):
                reached = step
            if reached is not None:
                assert gap >= D * (1 - 2e-3), step
        assert reached is not None and reached <= 60
        assert sum(f.stats.evade for f in filters) > 0 and sum(f.stats.brake for f in filters) == 0


def test_failed_solve_evades_within_the_rows():
    """OSQP stopped after one iteration (status max_iter): the evasion still satisfies every row
    from a safe state (u = 0 is feasible, so the worst margin t ≥ 0)."""
    rng = np.random.default_rng(3)
    dec = make_decentralized_filter(D, V, osqp_settings=dict(max_iter=1, check_termination=1))
    g4 = dec.gamma / 4
    for _ in range(10):
        pos = random_safe_positions(rng, 6, D, 0.3)
        nb = pos[1:]
        u = dec(toward(pos[:1], nb[:1], V)[0], pos[0], nb)
        d = pos[0] - nb
        dist = np.hypot(*d.T)
        assert np.all((d / dist[:, None]) @ u >= g4 * (D * D / dist - dist) - 1e-6)
        assert np.hypot(*u) <= V * (1 + 1e-12)
    assert dec.stats.failed == dec.stats.evade == 10 and dec.stats.solved == 0


def test_centralized_falls_back_to_per_drone_filters():
    cen = make_centralized_filter(4, D, V)
    pos = np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0], [-0.5, -0.5]])  # 0 and 1 coincide
    u_nom = np.array([[0.1, 0.0], [0.1, 0.0], [0.0, 0.2], [0.1, 0.1]])
    out = cen(u_nom, pos)
    assert np.hypot(*(out[0] - out[1])) > 0.5 * V  # fly apart along their pseudo-normals, at v_max
    np.testing.assert_allclose(np.hypot(*out[:2].T), V, atol=1e-9)
    np.testing.assert_allclose(out[2:], u_nom[2:], atol=1e-6)  # not in conflict: closest safe = nominal
    assert cen.last_fallback.tolist() == [True, True, False, False]
    assert cen.stats.infeasible == cen.stats.fallback == 1 and cen.stats.evade == 2 and cen.stats.solved == 0
    # a jam the swarm QP cannot solve: the per-drone filters evade the drones in conflict only
    pos = np.array([[0.0, 0.0], [0.02, 0.0], [0.0, 0.02], [-0.5, -0.5]])
    out = cen(np.zeros((4, 2)), pos, None, np.array([0.05, 0.05, 0.05, 0.0]))
    assert cen.last_fallback.tolist() == [True, True, True, False] and np.abs(out[3]).max() < 1e-9
    assert pair_distances(pos + DT * out)[:3, :3].min() > pair_distances(pos)[:3, :3].min()


def test_fallback_logs_are_rate_limited(caplog):
    dec = make_decentralized_filter(D, V)
    with caplog.at_level(logging.DEBUG, logger="lgtc_ros.safety"):
        for _ in range(10):
            dec(np.zeros(2), np.zeros(2), np.zeros((1, 2)))
    levels = [r.levelno for r in caplog.records if r.name == "lgtc_ros.safety"]
    assert len(levels) == 10
    assert [k + 1 for k, lv in enumerate(levels) if lv == logging.WARNING] == [1, 2, 4, 8]
    assert dec.log_counts["coincident neighbour"] == 10 and dec.stats.evade == 10


# ----------------------------------------------------------------------------- the swarm wrapper


SCENARIO = dataclasses.replace(load_scenario(resolve_scenario("paper_10x4")), n_agents=5)


@pytest.mark.parametrize("form", ["decentralized", "centralized"])
def test_swarm_filter_uncertainty_and_fallback_flags(form):
    s = SCENARIO
    n = s.n_agents
    plain, zero, unsure = (SwarmFilter(s, form) for _ in range(3))
    active = np.array([True, True, True, True, False])
    pos = np.array([[0.0, 0.0], [0.3, 0.0], [-0.4, 0.4], [0.5, 0.5], [-0.6, -0.6]])  # 4 landed
    u_nom = toward(pos, pos[[1, 0, 0, 1, 0]], s.v_max)
    assert np.array_equal(plain(u_nom, pos, active), zero(u_nom, pos, active, uncertainty=np.zeros(n)))
    unc = np.array([0.05, 0.05, 0.0, 0.0, 0.0])
    out = unsure(u_nom, pos, active, uncertainty=unc)
    gap = np.hypot(*(pos[0] - pos[1] + DT * (out[0] - out[1])))
    assert gap >= unsure.radius + 0.1 - 1e-4 and not unsure.last_fallback.any()
    jam = pos.copy()
    jam[1] = [0.02, 0.0]  # inside the inflated radius, deeper than one step can fix: 0 and 1 fall back
    unsure(u_nom, jam, active, uncertainty=unc)
    assert unsure.last_fallback.tolist() == [True, True, False, False, False]
    unsure(u_nom, jam, active, uncertainty=unc)
    assert unsure.fallback_counts.tolist() == [2, 2, 0, 0, 0]
    stats = unsure.stats
    assert stats["evade"] == 4 and stats["fallback"] == (4 if form == "decentralized" else 2)


def test_neighbour_set_grows_with_the_uncertainty():
    """A neighbour beyond the sensing radius whose inflated radius still reaches: it is filtered."""
    s = SCENARIO
    narrow = SwarmFilter(s, "decentralized", sensing_radius=0.3)
    pos = np.array([[0.0, 0.0], [0.45, 0.0], [-0.6, 0.6], [0.6, -0.6], [-0.6, -0.6]])
    unc = np.array([0.2, 0.2, 0.0, 0.0, 0.0])  # pair (0, 1): D' = 1.03 D + 0.4 > 0.45
    assert narrow.reach(0.4) > 0.45 > narrow.sensing_radius
    u_nom = np.zeros((5, 2))
    u_nom[0], u_nom[1] = [s.v_max, 0.0], [-s.v_max, 0.0]
    out = narrow(u_nom, pos, np.ones(5, dtype=bool), uncertainty=unc)
    assert out[0, 0] < 0 < out[1, 0]  # pushed apart
    out = narrow(u_nom, pos, np.ones(5, dtype=bool))  # without uncertainty they close in freely
    assert out[0, 0] > 0.9 * s.v_max and out[1, 0] < -0.9 * s.v_max


@pytest.mark.parametrize("form", ["decentralized", "centralized", "off"])
def test_a_held_drone_gets_zero_and_stays_an_obstacle(form):
    """Drone 1 is held (its pose too old to steer by): zero every tick, whatever comes at it, and
    drone 0, flying straight at it, stops outside the safety radius (its half of the pair row is
    enough on its own). Without the hold drone 1 would evade."""
    s = SCENARIO
    active = np.array([True, True, True, False, False])
    start = np.array([[-0.4, 0.0], [0.0, 0.0], [0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])
    hold = np.array([False, True, False, False, False])
    held, free = SwarmFilter(s, form), SwarmFilter(s, form)
    pos, gaps = start.copy(), []
    for _ in range(60):
        u_nom = toward(pos, pos[[1, 0, 0, 0, 0]], s.v_max)  # 0 and 1 at each other
        out = held(u_nom, pos, active, uncertainty=np.full(5, 0.01), hold=hold)
        assert np.array_equal(out[1], [0.0, 0.0]) and np.array_equal(out[3:], np.zeros((2, 2)))
        pos = pos + DT * out
        gaps.append(float(np.hypot(*(pos[0] - pos[1]))))
    assert held.stats["hold"] == 60
    assert pos[0, 0] > start[0, 0] + 0.1                                  # drone 0 did come closer
    if form == "off":
        assert min(gaps) < s.safety_radius  # no filter, no safety: the hold only zeroes the drone
        return
    assert min(gaps) >= s.safety_radius, min(gaps)
    out = free(toward(start, start[[1, 0, 0, 0, 0]], s.v_max), start, active, uncertainty=np.full(5, 0.01))
    assert np.hypot(*out[1]) > 0.5 * s.v_max and "hold" not in free.stats  # not held: it flies


def test_stale_poses_are_those_older_than_the_limit():
    from lgtc_ros.safety.swarm import stale_poses

    stamps = np.array([9.9, 9.4, 9.0, -np.inf, 9.0])
    known = np.array([True, True, True, False, False])
    assert stale_poses(10.0, stamps, known, 0.5).tolist() == [False, True, True, False, False]
