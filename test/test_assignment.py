"""Tests for lgtc_ros.assignment (eq. 3 agent-to-consumer assignment)."""
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lgtc_ros.assignment import (
    AssignmentProblem,
    AssignmentResult,
    _solve_dp,
    _solve_scip,
    brute_force,
    cost_matrix,
    greedy,
    objective,
    random_problem,
    solve,
    solve_batch,
    solve_cvxpy,
)


def _general_problem(rng: np.random.Generator, n: int, m: int, r: int) -> AssignmentProblem:
    """Multi-type supplies, zero demands and non-unit weights, beyond the simulator's draws."""
    supply = rng.uniform(0, 1, (n, r)) * (rng.random((n, r)) < 0.6)
    demand = rng.uniform(0, 1.5, (m, r)) * (rng.random((m, r)) < 0.7)
    return AssignmentProblem(
        rng.uniform(-1, 1, (n, 2)), supply, rng.uniform(-1, 1, (m, 2)), demand,
        w_mismatch=float(rng.uniform(0.1, 3)), w_proximity=float(rng.uniform(0.1, 3)),
        demand_floor=float(rng.uniform(0.05, 0.5)),
    )


def _small_instances(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(1, 7))
        m = int(rng.integers(1, min(n, 3) + 1))
        yield random_problem(rng, n, m) if k % 2 else _general_problem(rng, n, m, int(rng.integers(1, 5)))


def _assert_feasible(problem: AssignmentProblem, result: AssignmentResult) -> None:
    assert result.assign.shape == (problem.n_agents,)
    assert set(result.assign.tolist()) == set(range(problem.n_consumers))
    assert result.objective == pytest.approx(objective(problem, result.assign), rel=1e-12)
    assert result.bound <= result.objective + 1e-9
    assert result.gap >= 0.0


def test_objective_matches_paper_formula():
    rng = np.random.default_rng(0)
    p = _general_problem(rng, 7, 3, 3)
    assign = np.array([0, 1, 2, 0, 1, 2, 2])
    a = np.eye(3)[assign]
    d_pd = np.linalg.norm(p.agent_pos[:, None] - p.consumer_pos[None], axis=-1)
    inv_de = 1.0 / np.maximum(p.demand, p.demand_floor)
    l1 = np.linalg.norm(p.demand - a.T @ p.supply, "fro") ** 2
    l2 = np.abs((d_pd * np.outer(p.supply.sum(1), np.ones(3)) + p.supply @ inv_de.T) * a).sum()
    assert objective(p, assign) == pytest.approx(p.w_mismatch * l1 + p.w_proximity * l2, rel=1e-12)
    assert cost_matrix(p).shape == (7, 3)


def test_solve_matches_brute_force_seeded():
    for p in _small_instances(300, seed=1):
        exact, fast = brute_force(p), solve(p)
        _assert_feasible(p, fast)
        assert fast.status == "optimal" and fast.gap == 0.0
        assert fast.objective == pytest.approx(exact.objective, rel=1e-6, abs=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    n=st.integers(1, 6), m=st.integers(1, 3), r=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1), weights=st.tuples(st.floats(0, 5), st.floats(0, 5)),
)
def test_solve_matches_brute_force_hypothesis(n, m, r, seed, weights):
    m = min(m, n)
    rng = np.random.default_rng(seed)
    p = AssignmentProblem(rng.normal(size=(n, 2)), rng.exponential(size=(n, r)) * (rng.random((n, r)) < 0.5),
                          rng.normal(size=(m, 2)), rng.exponential(size=(m, r)) * (rng.random((m, r)) < 0.5),
                          w_mismatch=weights[0], w_proximity=weights[1])
    assert solve(p).objective == pytest.approx(brute_force(p).objective, rel=1e-6, abs=1e-9)


def test_scip_path_is_exact_with_zero_gap():
    for p in _small_instances(60, seed=2):
        result = _solve_scip(p, 10.0, 0.0, greedy(p), time.perf_counter())
        _assert_feasible(p, result)
        assert result.objective == pytest.approx(brute_force(p).objective, rel=1e-6, abs=1e-9)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(n=st.integers(1, 6), m=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), zero_weight=st.sampled_from([0, 1, 2]))
def test_scip_path_matches_brute_force_hypothesis(n, m, seed, zero_weight):
    p = _general_problem(np.random.default_rng(seed), n, min(m, n), 3)
    if zero_weight:  # a pure proximity or a pure mismatch problem
        p = AssignmentProblem(p.agent_pos, p.supply, p.consumer_pos, p.demand,
                              w_mismatch=float(zero_weight == 2), w_proximity=float(zero_weight == 1))
    result = _solve_scip(p, 10.0, 0.0, greedy(p), time.perf_counter())
    assert result.objective == pytest.approx(brute_force(p).objective, rel=1e-6, abs=1e-9)


def test_dp_matches_scip_beyond_brute_force_sizes():
    rng = np.random.default_rng(3)
    for n, m in [(10, 4), (9, 5), (12, 2), (13, 5)]:
        p = random_problem(rng, n, m)
        dp = objective(p, _solve_dp(p))
        assert dp == pytest.approx(_solve_scip(p, 30.0, 0.0, greedy(p), time.perf_counter()).objective, rel=1e-6)
    assert solve(random_problem(rng, 10, 4)).solver == "subset-dp"
    assert solve(random_problem(rng, 13, 5)).solver == "scip-direct"


def test_scip_path_matches_cvxpy_mid_size():
    p = random_problem(np.random.default_rng(12), 20, 5)
    fast, ref = solve(p, time_limit=30.0, gap_limit=0.0), solve_cvxpy(p, time_limit=30.0)
    assert fast.status == ref.status == "optimal"
    assert fast.objective == pytest.approx(ref.objective, rel=1e-6)


def test_solve_cvxpy_matches_brute_force():
    for p in list(_small_instances(6, seed=4))[:4]:
        ref = solve_cvxpy(p, time_limit=30.0)
        _assert_feasible(p, ref)
        assert ref.status == "optimal"
        assert ref.objective == pytest.approx(brute_force(p).objective, rel=1e-6, abs=1e-9)


def test_large_instance_meets_gap_target():
    p = random_problem(np.random.default_rng(5), 50, 10)
    result = solve(p, time_limit=10.0, gap_limit=0.01)
    _assert_feasible(p, result)
    assert result.solver == "scip-direct"
    assert result.status in ("optimal", "gap_limit") and result.gap <= 0.01
    assert result.objective <= objective(p, greedy(p)) + 1e-9


def test_time_limit_returns_incumbent():
    p = random_problem(np.random.default_rng(1), 100, 20)  # proving optimality takes seconds
    for limit in (1e-6, 0.15):  # before SCIP starts, and inside SCIP
        result = solve(p, time_limit=limit, gap_limit=0.0)
        _assert_feasible(p, result)
        assert result.status == "time_limit"
        assert "incumbent" in result.message
        assert result.gap > 0.0 and np.isfinite(result.bound)
        assert result.solver in ("greedy", "scip-direct")


def test_solve_cvxpy_time_limit_returns_incumbent():
    p = random_problem(np.random.default_rng(1), 100, 20)
    result = solve_cvxpy(p, time_limit=0.01)
    _assert_feasible(p, result)
    assert result.status == "time_limit" and "incumbent" in result.message


def test_greedy_is_feasible():
    rng = np.random.default_rng(7)
    for n, m in [(1, 1), (5, 5), (20, 7), (50, 10), (80, 3)]:
        p = random_problem(rng, n, m)
        assign = greedy(p)
        assert set(assign.tolist()) == set(range(m))


@pytest.mark.parametrize("solver", [solve, brute_force, greedy, solve_cvxpy])
def test_fewer_agents_than_consumers_raises(solver):
    p = random_problem(np.random.default_rng(8), 3, 4)
    with pytest.raises(ValueError, match="infeasible"):
        solver(p)


def test_brute_force_size_guard():
    with pytest.raises(ValueError, match="enumeration"):
        brute_force(random_problem(np.random.default_rng(9), 14, 4))


@pytest.mark.parametrize(
    "field, value",
    [
        ("agent_pos", np.zeros((3, 3))),
        ("agent_pos", np.zeros(3)),
        ("supply", -np.ones((3, 2))),
        ("supply", np.full((3, 2), np.nan)),
        ("supply", np.ones((4, 2))),
        ("consumer_pos", np.full((2, 2), np.inf)),
        ("demand", -np.ones((2, 2))),
        ("demand", np.ones((2, 3))),
        ("demand", np.ones((0, 2))),
        ("w_mismatch", -1.0),
        ("w_proximity", np.nan),
        ("demand_floor", 0.0),
    ],
)
def test_validation_names_field(field, value):
    kwargs = dict(agent_pos=np.zeros((3, 2)), supply=np.ones((3, 2)), consumer_pos=np.zeros((2, 2)),
                  demand=np.ones((2, 2)))
    kwargs[field] = value
    with pytest.raises(ValueError, match=field.split("_")[0]):
        AssignmentProblem(**kwargs)


def test_problem_is_an_immutable_copy():
    supply = np.ones((2, 1))
    p = AssignmentProblem(np.zeros((2, 2)), supply, np.zeros((1, 2)), np.ones((1, 1)))
    supply[0, 0] = 5.0
    assert p.supply[0, 0] == 1.0
    with pytest.raises(ValueError):
        p.supply[0, 0] = 2.0


def test_objective_rejects_bad_assignments():
    p = random_problem(np.random.default_rng(10), 4, 2)
    for bad in (np.array([0, 1, 2, 0]), np.array([0, 1]), np.array([0.0, 1.0, 0.0, 1.0])):
        with pytest.raises(ValueError):
            objective(p, bad)


def test_random_problem_distribution():
    n, m = 30, 6
    p = random_problem(np.random.default_rng(11), n, m)
    assert np.all(np.abs(p.agent_pos) <= 0.9) and np.all(np.abs(p.consumer_pos) <= 0.8)
    assert np.all((p.demand > 0).sum(1) == 2)
    assert np.all((p.demand[p.demand > 0] >= 0.5) & (p.demand[p.demand > 0] <= 1.0))
    hi = m / n
    assert np.all((p.supply > 0).sum(1) == 1)
    assert np.all((p.supply.sum(1) >= hi / 2) & (p.supply.sum(1) <= hi))
    assert p.supply.sum() <= p.demand.sum()
    again = random_problem(np.random.default_rng(11), n, m)
    assert np.array_equal(again.supply, p.supply) and np.array_equal(again.demand, p.demand)


def test_solve_batch():
    problems = [random_problem(np.random.default_rng(s), 10, 4) for s in range(3)]
    results = solve_batch(problems, gap_limit=0.0)
    assert [r.objective for r in results] == [solve(p).objective for p in problems]


def test_multi_type_problem_distribution():
    from lgtc_ros.assignment import random_multi_type_problem

    for r in (2, 3, 4, 6):
        p = random_multi_type_problem(np.random.default_rng(r), 40, 8, r)
        carried, wanted = (p.supply > 0).sum(1), (p.demand > 0).sum(1)
        assert carried.min() >= 2 and carried.max() <= min(4, r)
        assert wanted.min() >= 1 and wanted.max() <= r - 1  # every consumer lacks some type
        assert np.all(p.supply <= 1.0) and np.all(p.demand <= 1.5)
    with pytest.raises(ValueError):
        random_multi_type_problem(np.random.default_rng(0), 5, 2, 3, carried=(4, 4))


def test_fast_path_within_gap_of_cvxpy_optimum_on_multi_type_instances():
    """The bench's hard family, small enough for plain cvxpy + SCIP to prove optimality: the fast path
    at a 1 % gap limit (DP at N = 10, direct SCIP with the root search at N = 14) stays within 1 %."""
    from lgtc_ros.assignment import random_multi_type_problem

    rng = np.random.default_rng(21)
    for n, m, r in [(10, 4, 3), (14, 4, 3), (14, 4, 4), (16, 5, 3)]:
        p = random_multi_type_problem(rng, n, m, r)
        fast, ref = solve(p, time_limit=20.0, gap_limit=0.01), solve_cvxpy(p, time_limit=60.0)
        _assert_feasible(p, fast)
        assert ref.status == "optimal"
        assert fast.status in ("optimal", "gap_limit") and fast.gap <= 0.01
        assert fast.objective <= ref.objective * 1.01 + 1e-9
        assert fast.bound <= ref.objective + 1e-6 * abs(ref.objective)  # a valid bound


def test_root_search_moves_keep_every_consumer_covered():
    from lgtc_ros.assignment import _perturbed_descent, _round

    rng = np.random.default_rng(22)
    p = _general_problem(rng, 30, 7, 3)
    frac = rng.random((30, 7))
    assign = _round(frac)
    assert set(assign.tolist()) == set(range(7))
    for _ in range(5):
        assign = _perturbed_descent(p, cost_matrix(p), assign, rng, 5)
        assert set(assign.tolist()) == set(range(7))


def test_solve_cvxpy_gap_limit_is_passed_to_scip():
    p = random_problem(np.random.default_rng(23), 30, 6)
    loose, exact = solve_cvxpy(p, time_limit=60.0, gap_limit=0.05), solve_cvxpy(p, time_limit=60.0)
    assert exact.status == "optimal"
    assert loose.status in ("optimal", "gap_limit")
    assert loose.objective <= exact.objective * 1.05 + 1e-9


# A draw from the expert's re-plans (paper_10x4 at N = 20, seed 3000): type 1 has one carrier.
# Written as the quadratic of the other types, SCIP (presolve off) died of SIGFPE on it.
_ONE_CARRIER = dict(
    agent_pos=[[0.42817509, -0.19347991], [-0.35784286, 0.10596447], [-0.45798391, 0.17073715],
               [-0.49732307, 0.26635036], [0.48096389, 0.20949465], [0.05956209, -0.09295597],
               [0.56393313, -0.65172631], [-0.07648601, -0.02302027], [-0.61068499, 0.14111027],
               [-0.54087579, 0.03584674], [0.36115643, 0.0800175], [-0.06958955, -0.17594916],
               [-0.42689633, -0.01333592], [0.49322784, 0.03165941]],
    supply=[[0, 0.36314607, 0, 0], [0, 0, 0, 0.30304939], [0, 0, 0, 0.33916998], [0, 0, 0, 0.34922689],
            [0, 0, 0.2339256, 0], [0, 0, 0.35609356, 0], [0, 0, 0.38959104, 0], [0, 0, 0.22533493, 0],
            [0, 0, 0, 0.28450212], [0, 0, 0, 0.23122986], [0, 0, 0.23962766, 0], [0, 0, 0.31068322, 0],
            [0, 0, 0, 0.36483133], [0, 0, 0.24028611, 0]],
    consumer_pos=[[-0.02932139, -0.0975565], [0.44994557, 0.12709399], [0.56376791, -0.64888263],
                  [-0.48860016, 0.1192022]],
    demand=[[0.38438737, 0, 0.93956172, 0], [0, 0.3604489, 0.89087504, 0], [0, 0.44240147, 0.77213961, 0],
            [0, 0.2209606, 0, 0.52704221]],
)


def test_a_type_with_one_carrier_is_solved_not_crashed():
    # in a child process: a solver that dies of a signal must fail this test, not the whole run
    import json
    import subprocess
    import sys

    code = ("import json, sys, numpy as np\nfrom lgtc_ros.assignment import AssignmentProblem, solve, objective\n"
            "p = AssignmentProblem(**{k: np.array(v) for k, v in json.loads(sys.argv[1]).items()})\n"
            "r = solve(p, time_limit=30.0, gap_limit=0.0)\nprint(json.dumps([r.status, objective(p, r.assign)]))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(_ONE_CARRIER)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"solver process died: exit {out.returncode}\n{out.stderr[-2000:]}"
    status, value = json.loads(out.stdout.strip().splitlines()[-1])
    problem = AssignmentProblem(**{k: np.array(v) for k, v in _ONE_CARRIER.items()})
    assert status == "optimal"
    assert value == pytest.approx(objective(problem, solve_cvxpy(problem).assign), rel=1e-6)
