"""Agent-to-consumer assignment, eq. 3 of "Decentralized RL for Multi-Agent Multi-Resource
Allocation via Dynamic Cluster Agreements": each of N agents (supply so_i in R^r) goes to one
of M consumers (demand de_m in R^r), every consumer gets an agent, and we minimise
w_mismatch * ||de - a^T so||_F^2 + w_proximity * sum_im a_im cost_im.

Solvers: an exact subset DP for small instances, PySCIPOpt on a separable convex
reformulation for larger ones (greedy warm start, iterated local search at the root), plain
cvxpy + SCIP as reference. Positions in arena units.
"""
from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

_MAX_ENUMERATION = 2_000_000  # M**N limit of brute_force
_DP_BUDGET = 3_000_000  # element operations of the subset DP before SCIP is cheaper
_N_TANGENTS = 8  # initial outer-approximation cuts per quadratic term
_ROOT_SEARCH_S = 0.1  # at most this long in the root's iterated local search
_ROOT_SEARCH_PRIORITY = 2_000_000  # before SCIP's own heuristics at the root


@dataclass(frozen=True, eq=False)
class AssignmentProblem:
    """One instance of eq. 3 (only active agents).

    agent_pos [N, 2], supply [N, r] >= 0, consumer_pos [M, 2], demand [M, r] >= 0.
    """

    agent_pos: np.ndarray
    supply: np.ndarray
    consumer_pos: np.ndarray
    demand: np.ndarray
    w_mismatch: float = 1.0
    w_proximity: float = 1.0
    demand_floor: float = 0.1

    def __post_init__(self) -> None:
        for name, width in (("agent_pos", 2), ("supply", None), ("consumer_pos", 2), ("demand", None)):
            arr = np.array(getattr(self, name), dtype=float)  # private copy, made read-only below
            if arr.ndim != 2 or 0 in arr.shape or (width is not None and arr.shape[1] != width):
                raise ValueError(f"{name} must be a non-empty [n, {width or 'r'}] array, got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains non-finite values")
            if name in ("supply", "demand") and np.any(arr < 0):
                raise ValueError(f"{name} must be non-negative")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name, other, axis in (("supply", "agent_pos", 0), ("demand", "consumer_pos", 0), ("demand", "supply", 1)):
            mine, theirs = getattr(self, name).shape, getattr(self, other).shape
            if mine[axis] != theirs[axis]:
                raise ValueError(f"{name} shape {mine} does not match {other} shape {theirs} on axis {axis}")
        for name, zero_ok in (("w_mismatch", True), ("w_proximity", True), ("demand_floor", False)):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                raise ValueError(f"{name} must be finite and {'>=' if zero_ok else '>'} 0, got {value}")
            object.__setattr__(self, name, value)

    @property
    def n_agents(self) -> int:
        return self.supply.shape[0]

    @property
    def n_consumers(self) -> int:
        return self.demand.shape[0]


@dataclass(frozen=True, eq=False)
class AssignmentResult:
    """Outcome of one solve. assign [N] int consumer index per agent.

    bound is a proven lower bound on the optimum; gap = (objective - bound) / |objective|.
    status "optimal" (gap 0), "gap_limit" (gap <= gap_limit) or "time_limit" (best
    incumbent so far, gap as proven at the stop).
    """

    assign: np.ndarray
    objective: float
    bound: float
    gap: float
    status: str  # "optimal" | "gap_limit" | "time_limit"
    solve_time: float
    solver: str
    message: str = ""


def _check_feasible(problem: AssignmentProblem) -> None:
    if problem.n_agents < problem.n_consumers:
        raise ValueError(f"infeasible: {problem.n_agents} agents cannot cover {problem.n_consumers} consumers "
                         "(every consumer needs at least one agent, so N >= M is required)")


def cost_matrix(problem: AssignmentProblem) -> np.ndarray:
    """Linear proximity cost l2 per (agent, consumer), [N, M].

    The paper's 1/de is floored at demand_floor, so sending a type to a consumer that
    does not demand it is expensive (so/demand_floor) but finite.
    """
    dist = np.linalg.norm(problem.agent_pos[:, None, :] - problem.consumer_pos[None, :, :], axis=-1)
    inv_demand = 1.0 / np.maximum(problem.demand, problem.demand_floor)
    return dist * problem.supply.sum(axis=1)[:, None] + problem.supply @ inv_demand.T


def _objectives(problem: AssignmentProblem, cost: np.ndarray, assigns: np.ndarray) -> np.ndarray:
    """Objective of K assignments [K, N] -> [K]."""
    k, n = assigns.shape
    delivered = np.zeros((k, problem.n_consumers, problem.supply.shape[1]))
    for i in range(n):  # loop over agents keeps memory at K*M*r
        delivered[np.arange(k), assigns[:, i]] += problem.supply[i]
    mismatch = ((problem.demand[None] - delivered) ** 2).sum(axis=(1, 2))
    proximity = cost[np.arange(n)[None, :], assigns].sum(axis=1)
    return problem.w_mismatch * mismatch + problem.w_proximity * proximity


def objective(problem: AssignmentProblem, assign: np.ndarray) -> float:
    """Objective of one assignment, assign [N] int consumer index per agent.

    Coverage (every consumer served) is not checked here, only the index range.
    """
    assign = np.asarray(assign)
    if assign.shape != (problem.n_agents,) or not np.issubdtype(assign.dtype, np.integer):
        raise ValueError(f"assign must be an int array of shape ({problem.n_agents},)")
    if assign.min() < 0 or assign.max() >= problem.n_consumers:
        raise ValueError(f"assign entries must lie in [0, {problem.n_consumers})")
    return float(_objectives(problem, cost_matrix(problem), assign[None])[0])


def _result(problem: AssignmentProblem, assign: np.ndarray, bound: float, status: str, t0: float,
            solver: str, message: str = "") -> AssignmentResult:
    """Package an assignment [N]; the objective is always recomputed exactly from it."""
    assign = np.asarray(assign, dtype=np.int64)
    obj = objective(problem, assign)
    if status == "optimal":
        bound, gap = obj, 0.0
    else:
        bound = min(float(bound), obj)
        gap = (obj - bound) / max(abs(obj), 1e-9)
    return AssignmentResult(assign, obj, float(bound), float(gap), status,
                            time.perf_counter() - t0, solver, message)


def _trivial_bound(problem: AssignmentProblem, cost: np.ndarray) -> float:
    """Valid lower bound used when a solver proves nothing: l1 >= 0, l2 >= row minima."""
    return problem.w_proximity * float(cost.min(axis=1).sum())


def brute_force(problem: AssignmentProblem) -> AssignmentResult:
    """Exhaustive enumeration of all M**N assignments (tests only)."""
    t0 = time.perf_counter()
    _check_feasible(problem)
    n, m = problem.n_agents, problem.n_consumers
    if m**n > _MAX_ENUMERATION:
        raise ValueError(f"M**N = {m}**{n} exceeds the enumeration limit {_MAX_ENUMERATION}")
    cost, best, best_value = cost_matrix(problem), None, np.inf
    for start in range(0, m**n, 2**16):  # chunks bound the memory at N = 20, M = 2
        codes = np.arange(start, min(start + 2**16, m**n))
        assigns = np.stack(np.unravel_index(codes, (m,) * n), axis=1)
        assigns = assigns[np.all([(assigns == c).any(axis=1) for c in range(m)], axis=0)]
        values = _objectives(problem, cost, assigns) if len(assigns) else np.array([np.inf])
        if values.min() < best_value:
            best, best_value = assigns[np.argmin(values)], values.min()
    return _result(problem, best, 0.0, "optimal", t0, "enumeration")


def _neighbour_deltas(problem, cost, assign) -> tuple[np.ndarray, np.ndarray]:
    """Objective changes of all moves [N, M] (agent i to consumer k) and swaps [N, N]
    (agents i and j exchange consumers); inf where illegal."""
    so, w1, w2 = problem.supply, problem.w_mismatch, problem.w_proximity
    rows, sq = np.arange(problem.n_agents), (so**2).sum(axis=1)
    proj = so @ (problem.demand - np.eye(problem.n_consumers)[assign].T @ so).T  # [i, k] = R_k . s_i
    own, cross, own_cost = proj[rows, assign], proj[:, assign], cost[rows, assign]  # cross[i, j] = R_{a_j}.s_i
    # ||R_k - s||^2 - ||R_k||^2 = -2 R_k.s + ||s||^2 for the receiver, mirrored for the giver
    move = w1 * (2.0 * (own[:, None] - proj) + 2.0 * sq[:, None]) + w2 * (cost - own_cost[:, None])
    move[rows, assign] = np.inf
    move[np.bincount(assign, minlength=problem.n_consumers)[assign] < 2] = np.inf  # never empty a consumer
    lin = own[:, None] - cross.T - cross + own[None, :]  # (R_{a_i} - R_{a_j}) . (s_i - s_j)
    swap = w1 * 2.0 * (lin + sq[:, None] + sq[None, :] - 2.0 * so @ so.T)
    swap += w2 * (cost[:, assign] + cost[:, assign].T - own_cost[:, None] - own_cost[None, :])
    swap[assign[:, None] == assign[None, :]] = np.inf
    return move, swap


def _local_search(problem, cost, assign, max_iter: int = 1000) -> np.ndarray:
    """Best-improvement descent over single moves and pairwise swaps; keeps feasibility."""
    assign, tol = assign.copy(), -1e-12 * (1.0 + float(np.abs(cost).sum()))
    for _ in range(max_iter):
        move, swap = _neighbour_deltas(problem, cost, assign)
        i_move, i_swap = np.argmin(move), np.argmin(swap)
        if min(move.flat[i_move], swap.flat[i_swap]) >= tol:
            break
        if move.flat[i_move] <= swap.flat[i_swap]:
            i, k = divmod(int(i_move), problem.n_consumers)
            assign[i] = k
        else:
            i, j = divmod(int(i_swap), problem.n_agents)
            assign[i], assign[j] = assign[j], assign[i]
    return assign


def greedy(problem: AssignmentProblem) -> np.ndarray:
    """Feasible heuristic assignment [N]: cover each consumer, insert the rest, local search."""
    _check_feasible(problem)
    so, de, cost = problem.supply, problem.demand, cost_matrix(problem)
    # one distinct agent per consumer first, so coverage holds throughout
    alone = problem.w_mismatch * ((so**2).sum(1)[:, None] - 2.0 * so @ de.T) + problem.w_proximity * cost
    seed_agents, seed_consumers = linear_sum_assignment(alone)
    assign = np.full(problem.n_agents, -1, dtype=np.int64)
    assign[seed_agents] = seed_consumers
    residual = de - np.eye(problem.n_consumers)[seed_consumers].T @ so[seed_agents]
    free = np.flatnonzero(assign < 0)
    while free.size:  # cheapest insertion given what is already delivered
        delta = problem.w_mismatch * ((so[free] ** 2).sum(1)[:, None] - 2.0 * so[free] @ residual.T)
        delta += problem.w_proximity * cost[free]
        f, k = np.unravel_index(np.argmin(delta), delta.shape)
        assign[free[f]] = k
        residual[k] -= so[free[f]]
        free = np.delete(free, f)
    return _local_search(problem, cost, assign)


@functools.lru_cache(maxsize=16)
def _subset_pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (mask, sub) with sub a subset of mask over n bits, grouped by mask.

    Returns mask [3**n], sub [3**n] and starts [2**n + 1], the slice of each mask;
    cached because the RL loop solves the same sizes thousands of times.
    """
    digits = np.arange(3**n)  # one ternary digit per agent: 0 absent, 1 mask only, 2 both
    mask, sub = np.zeros((2, 3**n), dtype=np.int64)
    for bit in range(n):
        digits, d = np.divmod(digits, 3)
        mask |= (d >= 1).astype(np.int64) << bit
        sub |= (d == 2).astype(np.int64) << bit
    order = np.argsort(mask, kind="stable")
    mask, sub = mask[order], sub[order]
    starts = np.searchsorted(mask, np.arange(2**n + 1))
    mask, sub = mask.astype(np.int32), sub.astype(np.int32)
    for arr in (mask, sub, starts):
        arr.setflags(write=False)
    return mask, sub, starts


def _dp_work(n: int, m: int) -> int:
    """Rough element-operation count of _solve_dp, to choose between it and SCIP."""
    return 0 if m == 1 else max(m - 2, 0) * 3**n + m * 2**n * (n + 4)


def _solve_dp(problem: AssignmentProblem) -> np.ndarray:
    """Exact optimum [N] by dynamic programming over agent subsets, O(M * 3**N).

    The objective is a sum over consumers of a function of the agent set each receives,
    so F_k(S) = least cost of serving consumers 0..k-1, each non-empty, with agents S.
    """
    n, m = problem.n_agents, problem.n_consumers
    assign = np.zeros(n, dtype=np.int64)
    if m == 1:
        return assign
    sets = np.arange(2**n)
    members = ((sets[:, None] >> np.arange(n)) & 1).astype(float)  # [2**n, N]
    value = problem.w_mismatch * ((problem.demand[:, None, :] - (members @ problem.supply)[None]) ** 2).sum(-1)
    value += problem.w_proximity * (members @ cost_matrix(problem)).T  # [M, 2**n]
    value[:, 0] = np.inf  # every consumer needs an agent
    tables = [value[0]]
    if m > 2:
        mask, sub, starts = _subset_pairs(n)
        for k in range(1, m - 1):
            tables.append(np.minimum.reduceat(tables[-1][mask ^ sub] + value[k][sub], starts[:-1]))
    remaining = 2**n - 1
    for k in range(m - 1, 0, -1):  # backtrack: choose the set of consumer k
        subs = sets[(sets & ~remaining) == 0]
        chosen = subs[np.argmin(tables[k - 1][remaining ^ subs] + value[k][subs])]
        assign[(chosen >> np.arange(n)) & 1 == 1] = k
        remaining ^= chosen
    return assign


def _outcome(solver_status: str, time_limit: float) -> tuple[str, str]:
    """Our status and message for a SCIP status string."""
    status = {"optimal": "optimal", "gaplimit": "gap_limit"}.get(solver_status, "time_limit")
    if status != "time_limit":
        return status, f"SCIP status {solver_status}"
    return status, (f"SCIP stopped ({solver_status}, time limit {time_limit}s): best incumbent returned, "
                    "gap is its distance to the proven bound")


def _build_scip(problem: AssignmentProblem, cost: np.ndarray):
    """PySCIPOpt model of eq. 3 with delivered amounts t_kl = sum_i a_ik so_il as variables.

    The mismatch becomes a sum of univariate convex terms z_kl >= (de_kl - t_kl)^2, whose
    relaxation is far tighter (and presolves far faster) than SCIP's product
    linearisation of ||de - a^T so||^2; initial tangents and a binary-only square cut
    tighten it further. A type with a single carrier enters the objective linearly (exact on
    binaries). Returns (model, a [N][M] vars, [(k, l, t, z)] of the other types).
    """
    import pyscipopt as scip

    so, de, w1, n, m = problem.supply, problem.demand, problem.w_mismatch, problem.n_agents, problem.n_consumers
    linear, offset, mixed = problem.w_proximity * cost, 0.0, []
    for l in range(so.shape[1]) if w1 > 0 else ():
        carriers = np.flatnonzero(so[:, l] > 0)
        if carriers.size == 0:  # nothing of type l can be delivered: constant mismatch
            offset += w1 * float((de[:, l] ** 2).sum())
        elif carriers.size == 1:
            # one carrier i: (de - so_i a_i)^2 = de^2 + (so_i^2 - 2 de so_i) a_i on a binary, exactly.
            # Linear, and it must be: as the quadratic below, SCIP with presolve off died of a
            # floating point exception on such a draw (test_assignment: a type with one carrier)
            i, so_i = int(carriers[0]), float(so[carriers[0], l])
            offset += w1 * float((de[:, l] ** 2).sum())
            linear[i] += w1 * (so_i ** 2 - 2.0 * de[:, l] * so_i)
        else:
            mixed.append((l, carriers))
    model = scip.Model()
    model.hideOutput()
    a = [[model.addVar(vtype="B", obj=float(linear[i, k])) for k in range(m)] for i in range(n)]
    for i in range(n):
        model.addCons(scip.quicksum(a[i]) == 1)
    for k in range(m):
        model.addCons(scip.quicksum(a[i][k] for i in range(n)) >= 1)
    terms = []
    for l, carriers in mixed:
        hi = float(so[carriers, l].sum())
        for k in range(m):
            t, z = model.addVar(lb=0.0, ub=hi), model.addVar(lb=0.0, obj=w1)
            model.addCons(t == scip.quicksum(so[i, l] * a[i][k] for i in carriers))
            model.addCons(z >= (de[k, l] - t) * (de[k, l] - t))
            # tangents in the initial LP save SCIP many separation rounds at the root
            for p in np.unique(np.r_[np.linspace(0.0, hi, _N_TANGENTS), min(de[k, l], hi)]):
                model.addCons(z >= (de[k, l] - p) ** 2 - 2.0 * (de[k, l] - p) * (t - p))
            # t^2 = sum_i so_il^2 a_ik + (cross terms >= 0) on binaries: beats t^2 on split agents
            square = scip.quicksum(so[i, l] ** 2 * a[i][k] for i in carriers)
            model.addCons(z >= de[k, l] ** 2 - 2.0 * de[k, l] * t + square)
            terms.append((k, l, t, z))
    model.addObjoffset(offset)
    return model, a, terms


def _set_assignment(model, sol, problem: AssignmentProblem, a, terms, assign: np.ndarray) -> None:
    """Fill `sol` with assignment [N]: a from it, t the delivered amounts and z = (de - t)^2
    exactly (tight, so SCIP's value of the solution is its true objective)."""
    delivered = np.eye(problem.n_consumers)[assign].T @ problem.supply
    for i, row in enumerate(a):
        for k, var in enumerate(row):
            model.setSolVal(sol, var, float(assign[i] == k))
    for k, l, t, z in terms:
        model.setSolVal(sol, t, delivered[k, l])
        model.setSolVal(sol, z, (problem.demand[k, l] - delivered[k, l]) ** 2)


def _perturbed_descent(problem, cost, assign: np.ndarray, rng: np.random.Generator, moves: int) -> np.ndarray:
    """`_local_search` after `moves` random reassignments of assign [N] (coverage kept)."""
    assign = assign.copy()
    for _ in range(moves):
        i, k = int(rng.integers(problem.n_agents)), int(rng.integers(problem.n_consumers))
        if np.count_nonzero(assign == assign[i]) > 1:
            assign[i] = k
    return _local_search(problem, cost, assign)


@functools.lru_cache(maxsize=1)
def _root_search_class():
    """The class of `_solve_scip`'s root heuristic (pyscipopt is imported on first use)."""
    import pyscipopt as scip

    class RootSearch(scip.Heur):
        """Iterated local search at the root, once its LP bound is known, while the incumbent is not
        yet within the gap limit of it: from the rounded LP solution and from the incumbent,
        perturbed (a few random reassignments) then descended (`_local_search`), for at most
        `budget_s`. The greedy incumbent is often 1-2 % above the optimum on multi-type instances,
        where the root bound is already within 1 %; SCIP's own root heuristics (RENS: a sub-MIP)
        then take most of a second to close that."""

        def __init__(self, problem, cost, a, terms, incumbent: np.ndarray, gap_limit: float, budget_s: float,
                     deadline: float):
            self.problem, self.cost, self.a, self.terms = problem, cost, a, terms
            self.best, self.value = incumbent, objective(problem, incumbent)
            self.gap_limit, self.budget_s, self.deadline = gap_limit, budget_s, deadline
            self.ran = False

        def heurexec(self, heurtiming, nodeinfeasible):
            model, problem = self.model, self.problem
            bound = model.getDualbound()
            if nodeinfeasible or self.value - bound <= self.gap_limit * max(abs(bound), 1e-9):
                return {"result": scip.SCIP_RESULT.DIDNOTRUN}
            self.ran, rng, found = True, np.random.default_rng(0), False
            stop = min(time.perf_counter() + self.budget_s, self.deadline)  # perf_counter, as solve's time limit
            starts = [self.best]
            if model.getLPSolstat() == scip.SCIP_LPSOLSTAT.OPTIMAL:
                starts.append(_round(np.array([[var.getLPSol() for var in row] for row in self.a])))
            k = 0
            while time.perf_counter() < stop:
                seed = starts[k] if k < len(starts) else self.best
                cand = _local_search(problem, self.cost, seed) if k < len(starts) else \
                    _perturbed_descent(problem, self.cost, seed, rng, int(rng.integers(2, 6)))
                k += 1
                value = objective(problem, cand)
                if value < self.value - 1e-12 * max(1.0, abs(value)):
                    self.best, self.value = cand, value
                    sol = model.createOrigSol(self)  # SCIP's auxiliary variables are completed from it
                    _set_assignment(model, sol, problem, self.a, self.terms, cand)
                    found |= bool(model.trySol(sol, printreason=False))
                    if value - bound <= self.gap_limit * max(abs(bound), 1e-9):
                        break
            return {"result": scip.SCIP_RESULT.FOUNDSOL if found else scip.SCIP_RESULT.DIDNOTFIND}

    return RootSearch


def _round(frac: np.ndarray) -> np.ndarray:
    """Assignment [N] from a fractional one [N, M] (N >= M): one distinct agent per consumer by the
    largest weights, every other agent to its largest."""
    assign = np.argmax(frac, axis=1)
    seed_agents, seed_consumers = linear_sum_assignment(-frac)
    assign[seed_agents] = seed_consumers
    return assign


def _solve_scip(problem, time_limit: float, gap_limit: float, warm: np.ndarray, t0: float) -> AssignmentResult:
    """Solve the direct SCIP model warm-started with assignment warm [N]; t0 = start time."""
    import pyscipopt as scip

    cost = cost_matrix(problem)
    model, a, terms = _build_scip(problem, cost)
    sol = model.createSol()
    _set_assignment(model, sol, problem, a, terms, warm)
    model.addSol(sol)
    # measured on 30 multi-type draws (N = 50, M = 10, r = 2-4; 24 like test _general_problem with
    # unit weights), same process, interleaved, loaded machine: 30/30 within 1 % in < 1 s (max
    # 0.57 s) with it, 28/30 without; running it in the root's cut loop too tripled the median. It
    # did not run on 20 one-type draws nor on 20 of the bench's r = 3 draws (greedy within the gap)
    search = _root_search_class()(problem, cost, a, terms, warm, gap_limit, _ROOT_SEARCH_S, t0 + time_limit)
    model.includeHeur(search, "lgtc_root_search", "iterated local search at the root", "L",
                      priority=_ROOT_SEARCH_PRIORITY, freq=0, freqofs=0, maxdepth=0,
                      timingmask=scip.SCIP_HEURTIMING.AFTERLPNODE)
    # measured on random_problem draws: presolve (mostly probing) costs more than it saves, and
    # fast separation still adds the outer-approximation cuts the bound relies on
    model.setPresolve(scip.SCIP_PARAMSETTING.OFF)
    model.setSeparating(scip.SCIP_PARAMSETTING.FAST)
    model.setParam("limits/gap", gap_limit)  # SCIP divides by min(|primal|, |dual|): at least as strict
    model.setParam("limits/time", max(time_limit - (time.perf_counter() - t0), 1e-3))
    model.optimize()
    assign = warm
    if model.getNSols() > 0:
        best = model.getBestSol()
        found = np.array([np.argmax([best[var] for var in row]) for row in a])
        if objective(problem, found) <= objective(problem, warm):  # guard against SCIP tolerances
            assign = found
    status, message = _outcome(model.getStatus(), time_limit)
    bound = max(model.getDualbound(), _trivial_bound(problem, cost))
    return _result(problem, assign, bound, status, t0, "scip-direct", message)


def solve(problem: AssignmentProblem, time_limit: float = 1.0, gap_limit: float = 0.01) -> AssignmentResult:
    """Fast path: exact subset DP when small, else greedy warm start + direct SCIP.

    time_limit (s, wall clock incl. model building) bounds the SCIP path; the greedy
    warm start (~2 ms at N=50) is not interruptible, and the DP path is only taken when
    it costs milliseconds. SCIP stops once its proven relative gap is <= gap_limit.
    """
    t0 = time.perf_counter()
    _check_feasible(problem)
    if _dp_work(problem.n_agents, problem.n_consumers) <= _DP_BUDGET:
        return _result(problem, _solve_dp(problem), 0.0, "optimal", t0, "subset-dp")
    warm = greedy(problem)
    if time.perf_counter() - t0 >= time_limit:
        message = "time limit hit before SCIP started: greedy incumbent returned"
        return _result(problem, warm, _trivial_bound(problem, cost_matrix(problem)), "time_limit", t0, "greedy",
                       message)
    return _solve_scip(problem, time_limit, gap_limit, warm, t0)


def solve_cvxpy(problem: AssignmentProblem, time_limit: float = 60.0, solver: str = "SCIP",
                gap_limit: float = 0.0) -> AssignmentResult:
    """Reference: eq. 3 written plainly in cvxpy (boolean a, sum_squares), solved to optimality or,
    with gap_limit > 0, until SCIP proves that relative gap (its `limits/gap`, SCIP only)."""
    import cvxpy as cp

    t0 = time.perf_counter()
    _check_feasible(problem)
    cost = cost_matrix(problem)
    a = cp.Variable((problem.n_agents, problem.n_consumers), boolean=True)
    mismatch = cp.sum_squares(problem.demand - a.T @ problem.supply)
    proximity = cp.sum(cp.multiply(cost, a))
    objective_expr = problem.w_mismatch * mismatch + problem.w_proximity * proximity
    prob = cp.Problem(cp.Minimize(objective_expr), [cp.sum(a, axis=1) == 1, cp.sum(a, axis=0) >= 1])
    params = {"limits/time": time_limit, **({"limits/gap": gap_limit} if gap_limit > 0 else {})}
    options = {"scip_params": params} if solver.upper() == "SCIP" else {}
    try:
        with warnings.catch_warnings():  # cvxpy warns "inaccurate" at any limit; our status says it
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=solver, **options)
    except cp.error.SolverError:  # raised when the solver stops without any solution
        pass
    name = f"cvxpy-{solver}"
    if a.value is None:
        message = f"{solver} found no solution ({prob.status}): greedy incumbent returned"
        return _result(problem, greedy(problem), _trivial_bound(problem, cost), "time_limit", t0, name, message)
    assign = np.argmax(a.value, axis=1)
    scip_status = "optimal" if prob.status == cp.OPTIMAL else "timelimit"
    bound, stats = _trivial_bound(problem, cost), prob.solver_stats.extra_stats if prob.solver_stats else None
    if isinstance(stats, dict) and "model" in stats:  # SCIP: its status and dual bound are exposed
        scip_status, model = stats["scip_status"], stats["model"]
        offset = objective(problem, assign) - model.getPrimalbound()  # constant cvxpy keeps outside SCIP
        bound = max(model.getDualbound() + offset, bound)
    status, message = _outcome(scip_status, time_limit)
    return _result(problem, assign, bound, status, t0, name, message)


def solve_batch(problems: list[AssignmentProblem], **kw) -> list[AssignmentResult]:
    """solve() on each problem in turn; kw are passed through."""
    return [solve(p, **kw) for p in problems]


def random_problem(rng: np.random.Generator, n_agents: int, n_consumers: int, n_types: int = 4) -> AssignmentProblem:
    """Instance drawn like the simulator's resets.

    Each consumer demands 2 distinct types, U[0.5, 1] each; each agent carries one type,
    U[hi/2, hi] with hi = M/N, so total supply never exceeds total demand.
    """
    if n_agents < 1 or n_consumers < 1 or n_types < 2:
        raise ValueError("need n_agents >= 1, n_consumers >= 1 and n_types >= 2")
    agent_pos = rng.uniform(-0.9, 0.9, size=(n_agents, 2))
    consumer_pos = rng.uniform(-0.8, 0.8, size=(n_consumers, 2))
    demand = np.zeros((n_consumers, n_types))
    wanted = np.argsort(rng.random((n_consumers, n_types)), axis=1)[:, :2]  # uniform distinct pair
    np.put_along_axis(demand, wanted, rng.uniform(0.5, 1.0, size=(n_consumers, 2)), axis=1)
    hi = 0.5 * 2 * n_consumers / n_agents
    supply = np.zeros((n_agents, n_types))
    supply[np.arange(n_agents), rng.integers(0, n_types, size=n_agents)] = rng.uniform(hi / 2, hi, size=n_agents)
    return AssignmentProblem(agent_pos, supply, consumer_pos, demand)


def random_multi_type_problem(rng: np.random.Generator, n_agents: int, n_consumers: int, n_types: int = 3,
                              carried: tuple[int, int] = (2, 4)) -> AssignmentProblem:
    """The hard family of `lgtc bench`: agents carry several types, consumers lack some.

    Each agent carries between carried[0] and min(carried[1], n_types) distinct types, U[0, 1]
    each; each consumer demands between 1 and n_types - 1 distinct types (zero demand for the
    others), U[0, 1.5] each; positions U[-1, 1]. Zero demands make some agent-consumer pairs
    expensive (supply / demand_floor), and multi-type supplies couple the per-type mismatch
    terms, which weakens the relaxation: the simulator's one-type draws (`random_problem`) are
    the easy case.
    """
    lo_c, hi_c = carried[0], min(carried[1], n_types)
    if n_agents < 1 or n_consumers < 1 or n_types < 2 or not 1 <= lo_c <= hi_c:
        raise ValueError("need n_agents >= 1, n_consumers >= 1, n_types >= 2 and 1 <= carried[0] <= "
                         "min(carried[1], n_types)")

    def pick(rows: int, counts: np.ndarray, high: float) -> np.ndarray:  # counts[i] distinct types per row
        rank = np.argsort(np.argsort(rng.random((rows, n_types)), axis=1), axis=1)
        return np.where(rank < counts[:, None], rng.uniform(0.0, high, (rows, n_types)), 0.0)

    agent_pos = rng.uniform(-1.0, 1.0, size=(n_agents, 2))
    consumer_pos = rng.uniform(-1.0, 1.0, size=(n_consumers, 2))
    supply = pick(n_agents, rng.integers(lo_c, hi_c + 1, size=n_agents), 1.0)
    demand = pick(n_consumers, rng.integers(1, n_types, size=n_consumers), 1.5)
    return AssignmentProblem(agent_pos, supply, consumer_pos, demand)
