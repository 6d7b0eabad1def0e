"""Control-barrier-function (CBF) safety filter for single-integrator drones, built on OSQP.

Model: p_dot = u in the normalized arena [-1, 1]^2 (arena units, seconds), applied at dt (20 Hz).
Every call solves the QP  min ½|u|² − u_nomᵀu  (the minimizer of |u − u_nom|²)  over rows:

* pair barrier h_ij = |p_i − p_j|² − D², normal n_ij = (p_i − p_j)/|p_i − p_j|; every row is divided
  by 2|p_i − p_j| so all rows have unit norm (no OSQP scaling needed):
  centralized    n_ijᵀ(u_i − u_j) ≥ −γ h_ij / (2|p_i − p_j|)     (2 (p_i−p_j)ᵀ(u_i−u_j) ≥ −γ h_ij)
  decentralized  n_ijᵀ u_i        ≥ −γ h_ij / (4|p_i − p_j|)     (each drone takes half, neighbours
                                                                   are unknown; the two halves add up)
* arena, L = arena_half − margin, one two-sided row per axis:  −γ_a (L + p) ≤ u ≤ γ_a (L − p)
* speed, a regular S-gon inscribed in the disk |u| ≤ v_max: S/2 two-sided rows −b ≤ c_sᵀu ≤ b,
  c_s = (cos 2πs/S, sin 2πs/S), b = v_max cos(π/S), so the result never exceeds v_max.

Discrete time (why γ dt ≤ 1, default γ = γ_a = 0.5/dt = 10 s⁻¹): h is convex in p, so after p ← p + u dt
h⁺ = h + 2 dt (p_i−p_j)ᵀ(u_i−u_j) + dt²|u_i−u_j|² ≥ (1 − γ dt) h ≥ 0, and for the linear arena
barrier L − p⁺ ≥ (1 − γ_a dt)(L − p) ≥ 0: with γ dt ≤ 1 the continuous condition is *sufficient* for
the sampled system, not an approximation. γ dt = 0.5 lets a gap close at most by half per step, which
leaves room for solver tolerance and one step of neighbour-position latency.

Pair rows the speed bound already implies (rhs ≤ −v_max decentralized, ≤ −2 v_max centralized: "far"
pairs), unused slots and pairs of two inactive drones are relaxed to (−inf, inf): the solution is
unchanged. (A finite never-binding bound would spare OSQP a refactorization when a row switches, but
measured 3.5x more ADMM iterations.) From a safe state (all h ≥ 0, inside the arena) u = 0 is
feasible, so the QP can only be infeasible from an unsafe state.

Pose uncertainty (`clearance` per pair, `uncertainty` per drone; arena units). A filter only sees
measured positions p̂; the caller bounds each drone's error by u_i ≥ |p̂_i − p_i| (v_max × (age of the
pose + latency until the command is applied): a drone flies at most v_max meanwhile) and the pair
(i, j) gets the radius D_ij = D + u_i + u_j. Why that keeps the true separation: from the same
snapshot p̂, every row is the one above with D_ij, so the sampled argument gives, for the virtual
positions p̂⁺ = p̂ + u dt, |p̂_i⁺ − p̂_j⁺| ≥ D_ij whenever |p̂_i − p̂_j| ≥ D_ij; the true positions move by
the same u dt, so |p_i⁺ − p̂_i⁺| = |p_i − p̂_i| ≤ u_i and by the triangle inequality
|p_i⁺ − p_j⁺| ≥ |p̂_i⁺ − p̂_j⁺| − u_i − u_j ≥ D. The same holds at every instant s of a hold
τ ≤ 1/γ (two ticks by default: h(s) ≥ (1 − γs) h, the expansion above with s for dt). Not covered:
(1) a command held for τ > 1/γ: callers add v_max (τ − 1/γ) to each uncertainty (count that hold
into the age); (2) a pair already measured inside D_ij (the uncertainty grew, e.g. a pose came later than the last
one): the barrier then demands separation (h rises back toward 0 at rate γ) and the evasion below
takes over when that is infeasible, but the true separation is only as good as the margin left;
(3) the arena rows are not inflated (the margin, D/2 by default, absorbs small errors; `SwarmFilter`'s
`hold` stops a drone whose pose is older than the CBF node's `max_pose_age_s`); (4) the two
halves of a decentralized pair add up only when both drones filter the same snapshot with the same
D_ij (the cbf node and the runtime do). None or all-zero clearance gives exactly the rows above.

Fallback (evasion). When the QP is infeasible (a pair inside its inflated radius, a jam, a drone
squeezed against a wall), OSQP does not return "solved" (max_iter, inaccurate, exception), or a
neighbour coincides, braking to zero is not safe: a neighbour that keeps coming still hits. The drone
instead takes the velocity that best separates it from its conflicting neighbours whatever they do,
a small second OSQP problem (set up once per filter, variables u and t):
    maximize  t − (ε/2)|u − u_reg|²   s.t.  n_kᵀu − t ≥ min(r_k, v_max)  for every non-relaxed pair row k,
with r_k its right-hand side above (the demanded separation rate: the deeper, the more urgent;
capped at v_max, so all neighbours that demand more than the drone can give count equally and the
objective is the worst-case separation rate min_k n_kᵀu), u inside a 16-gon inscribed in |u| ≤ v_max
and rotated so that a vertex points along the most urgent normal (one neighbour: u = v_max n, full
speed away, the best there is against a pursuer at v_max), the wall rows hard but never infeasible
(inside L as in the QP; a drone already beyond L holds its distance to the wall; beyond the arena
edge it returns at ≤ v_max cos(π/16)/√2 per axis), t ≤ 2 v_max (only binds without pair rows) and
ε = 0.05/v_max small enough (ε|u − u_reg| < sin(π/16)) not to move the LP's vertex; u_reg is u_nom
clipped to v_max and only breaks ties. From a safe state u = 0 gives t ≥ 0, so the evasion then
satisfies every row too (it is safe, only less close to u_nom). A coincident neighbour (closer than
1e-9) has no normal: it gets the pseudo-normal at angle `agent_index` × golden angle (distinct for
every drone, so two coincident drones fly apart) and the maximal urgency. If the evasion problem
itself fails the drone brakes. The centralized filter, when the swarm QP fails or two drones
coincide, runs every moving drone through one per-drone filter (the decentralized rows with all
other drones as neighbours, whose halves add up to the swarm rows, and its evasion): the drones not in
conflict still get the closest safe velocity rather than a stop.

Non-finite input (nothing is known about where the drones are) still brakes. Everything is counted in
`filter.stats` (`CBFStats`) and `filter.fell_back`/`last_fallback` say which drones fell back in the
last call; logging on the `lgtc_ros.safety` logger is rate-limited per reason (a warning at the 1st,
2nd, 4th, 8th... occurrence, debug otherwise; `log_counts` can be shared between filters). Numerical
trouble never raises; wrong shapes or parameters (programming errors) raise ValueError.
"""
from __future__ import annotations

import itertools
import logging
import math
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import osqp
import scipy.sparse as sp

logger = logging.getLogger("lgtc_ros.safety")

INF = 1e30  # OSQP_INFTY: OSQP treats bounds at or beyond it as infinite
_SOLVED = int(osqp.SolverStatus.OSQP_SOLVED)
_INFEASIBLE = {int(osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE),
               int(osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE_INACCURATE)}
_INTERRUPTED = int(osqp.SolverStatus.OSQP_SIGINT)
_EXCEPTION = -100  # our status for "OSQP raised or returned a non-finite solution"
_MIN_DIST = 1e-9  # closer than this the pair normal is undefined: treated as infeasible
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))  # pseudo-normal of a coincident pair: agent_index × this
EVASION_POLYGON = 16  # speed polygon of the evasion problem (rotated per call): |u| ≥ 0.98 v_max at every
# angle, and exactly v_max along the most urgent normal
_agent_counter = itertools.count()  # default agent_index: creation order

# Per-instance settings (never global); measured on adversarial swarms (tests, bench_cbf):
# * rows are unit-norm and P = I, so Ruiz scaling only costs time;
# * eps 1e-3 then polish: polishing returns the exact active-set solution (1e-8 from cvxpy) in the
#   typical case; where it cannot (degenerate jams) the ADMM answer is within 1e-3 units/s;
# * adaptive rho only after 25 iterations and only for a 20x change: fixed rho stalls in thin
#   wedges (a drone in a corner next to a neighbour), a more eager adaptation stalls elsewhere;
# * max_iter bounds the worst call (decentralized ~0.5 µs/iteration, centralized N = 50 ~25 µs).
DEFAULT_OSQP_SETTINGS: dict = dict(
    verbose=False, scaling=0, polishing=True, warm_starting=True, eps_abs=1e-3, eps_rel=1e-3,
    max_iter=1000, check_termination=5, adaptive_rho=True, adaptive_rho_interval=25,
    adaptive_rho_tolerance=20.0, rho=1.0, alpha=1.6, check_dualgap=False)
CENTRALIZED_MAX_ITER = 400
# The swarm QP keeps rho fixed: with unit-norm rows it converges in 40 iterations (p99, bench_cbf
# "random" at N = 50; 83 with adaptation), and every adaptive update refactors a KKT system of
# ~1500 rows: total p99 3.1 -> 1.6 ms, agreement with cvxpy unchanged (tests).
CENTRALIZED_SETTINGS: dict = dict(max_iter=CENTRALIZED_MAX_ITER, adaptive_rho=False)
# The evasion LP (3 variables, rarely solved): more iterations are cheap, polishing makes it exact.
EVASION_SETTINGS: dict = dict(max_iter=4000)


@dataclass
class CBFStats:
    """Counters of one filter. `fallback` counts calls in which at least one drone did not get the
    QP's answer (it evaded or braked); `evade` and `brake` count drones (decentralized: one per call)."""

    calls: int = 0
    solved: int = 0
    infeasible: int = 0   # OSQP primal infeasible, or coincident drones
    failed: int = 0       # any other OSQP status (max_iter, inaccurate, ...) or a solver exception
    nonfinite: int = 0    # NaN/inf in the input (positions, commands or clearances)
    fallback: int = 0
    evade: int = 0        # drones given the evasion velocity (see module doc)
    brake: int = 0        # drones braked to zero (non-finite input, or the evasion failed too)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _check_params(safety_radius: float, v_max: float, arena_half: float, margin: float, gamma: float,
                  gamma_arena: float, dt: float, n_polygon: int) -> None:
    if not (safety_radius > 0 and v_max > 0 and dt > 0 and arena_half > 0 and margin >= 0):
        raise ValueError("safety_radius, v_max, dt, arena_half must be > 0 and margin >= 0")
    if arena_half - margin <= 0:
        raise ValueError(f"margin {margin} leaves no arena (arena_half {arena_half})")
    for name, g in (("gamma", gamma), ("gamma_arena", gamma_arena)):
        if not 0 < g * dt <= 1:
            raise ValueError(f"{name}*dt must be in (0, 1] for discrete-time safety, got {g * dt}")
    if n_polygon < 4 or n_polygon % 2:
        raise ValueError(f"n_polygon must be an even number >= 4, got {n_polygon}")


def speed_polygon(v_max: float, n_polygon: int = 8) -> tuple[np.ndarray, float]:
    """Normals c [S/2, 2] and bound b of the S-gon inscribed in |u| ≤ v_max: −b ≤ c u ≤ b."""
    ang = 2 * np.pi * np.arange(n_polygon // 2) / n_polygon
    return np.stack([np.cos(ang), np.sin(ang)], axis=1), v_max * math.cos(math.pi / n_polygon)


def _pattern(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[sp.csc_matrix, np.ndarray]:
    """CSC matrix with the fixed pattern (all entries 1) and `perm` such that Ax = vals[perm]
    turns values listed in the (rows, cols) order into OSQP's column-major data order."""
    marker = np.arange(1, len(rows) + 1, dtype=np.float64)  # nonzero markers survive conversion
    a = sp.csc_matrix((marker, (rows, cols)), shape=shape)
    a.sort_indices()
    perm = a.data.astype(np.int64) - 1
    a.data[:] = 1.0
    return a, perm


class _Qp:
    """One OSQP problem set up once; each solve updates q, l, u and A's values in place.

    Callers write the problem data into the views `q` [n], `l`, `u` [m] and `ax` [nnz(A)] and call
    `solve()`. An anchor variable t (objective ½t² + t, row t ≥ 0) is appended: its row is always
    active, so OSQP's polish step always runs (it gives the exact active-set solution; osqp 1.x's C
    code prints "Polishing not needed" to stdout, ignoring verbose, when no row is active).
    osqp 1.x's `OSQP.update`/`solve` wrappers add ~12 µs per call (constant look-ups, clipping copies,
    a SimpleNamespace of the info), so by default the bound C solver (`OSQP._solver`) is driven
    directly; `fast_path=False` uses only the public API.
    """

    def __init__(self, a: sp.csc_matrix, settings: dict, fast_path: bool,
                 p_diag: np.ndarray | None = None) -> None:
        m, n = a.shape
        pd = np.ones(n + 1) if p_diag is None else np.append(np.asarray(p_diag, dtype=np.float64), 1.0)
        nz = np.flatnonzero(pd)
        p_mat = sp.csc_matrix((pd[nz], (nz, nz)), shape=(n + 1, n + 1))
        full = sp.bmat([[a, None], [None, sp.csc_matrix(np.ones((1, 1)))]], format="csc")
        assert np.array_equal(full.indices[: a.nnz], a.indices)  # the anchor entry comes last
        self._q, self._l, self._u = np.zeros(n + 1), np.full(m + 1, -INF), np.full(m + 1, INF)
        self._q[n], self._l[m] = 1.0, 0.0
        self._ax = np.ones(a.nnz + 1)
        self.q, self.l, self.u, self.ax = self._q[:n], self._l[:m], self._u[:m], self._ax[: a.nnz]
        self._n = n
        self.solver = osqp.OSQP()
        self.solver.setup(p_mat, self._q, full, self._l, self._u, **settings)
        ext = getattr(self.solver, "_solver", None)
        ok = all(hasattr(ext, k) for k in ("update_data_vec", "update_data_mat", "solve", "info"))
        self._ext = ext if fast_path and ok else None

    def solve(self) -> tuple[np.ndarray | None, int]:
        """Solution x [n] (None unless solved) and the OSQP status value (_EXCEPTION: raised/NaN)."""
        try:
            ext = self._ext
            if ext is not None:
                ext.update_data_vec(q=self._q, l=self._l, u=self._u)
                ext.update_data_mat(P_x=None, P_i=None, A_x=self._ax, A_i=None)
                ext.solve()
                status = int(ext.info.status_val)
                x = ext.solution.x if status == _SOLVED else None
            else:
                self.solver.update(q=self._q, l=self._l, u=self._u, Ax=self._ax)
                res = self.solver.solve(raise_error=False)
                status = int(res.info.status_val)
                x = res.x if status == _SOLVED else None
        except (osqp.OSQPException, ValueError, RuntimeError) as exc:  # numerical: never raise
            logger.debug("OSQP raised %r", exc)  # counted and logged (rate-limited) by the filter
            x, status = None, _EXCEPTION
        if status == _INTERRUPTED:
            # OSQP has a SIGINT handler of its own in place while it solves, and returns: the Ctrl-C
            # was the process's (a node's stop, `lgtc sim`'s interrupt), so hand it back; swallowed,
            # a CBF node kept spinning after Ctrl-C
            signal.raise_signal(signal.SIGINT)
        if x is not None and math.isfinite(x.sum()):
            return x[: self._n], status
        # a stalled iterate (e.g. duals diverging in a jam) is a bad warm start for the next call
        self.solver.warm_start(x=np.zeros(self._n + 1), y=np.zeros(len(self._l)))
        return None, status if x is None else _EXCEPTION


def _status_reason(status: int) -> str:
    if status in _INFEASIBLE:
        return "infeasible"
    return "solver exception" if status == _EXCEPTION else f"OSQP status {status}"


class _FilterBase:
    """Shared parameters, counters and fallback bookkeeping of both forms."""

    form = "base"

    def __init__(self, safety_radius: float, v_max: float, arena_half: float, margin: float | None,
                 gamma: float | None, gamma_arena: float | None, dt: float, n_polygon: int,
                 log_counts: Counter | None = None) -> None:
        margin = safety_radius / 2 if margin is None else margin
        gamma = 0.5 / dt if gamma is None else gamma
        gamma_arena = gamma if gamma_arena is None else gamma_arena
        _check_params(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
        self.safety_radius, self.v_max, self.dt = float(safety_radius), float(v_max), float(dt)
        self.gamma, self.gamma_arena = float(gamma), float(gamma_arena)
        self.arena_half, self.margin, self.n_polygon = float(arena_half), float(margin), int(n_polygon)
        self.limit = float(arena_half - margin)  # L
        self.poly_normals, self.poly_bound = speed_polygon(v_max, n_polygon)
        self.stats = CBFStats()
        self.log_counts: Counter = Counter() if log_counts is None else log_counts

    @property
    def solver(self) -> osqp.OSQP:
        """The one OSQP object, set up once in __init__ and only updated afterwards."""
        return self._qp.solver

    def _log(self, reason: str, action: str) -> None:
        """Rate-limited log of a fallback: a warning at the 1st, 2nd, 4th, 8th... `reason`, else debug."""
        n = self.log_counts[reason] = self.log_counts[reason] + 1
        level = logging.WARNING if n & (n - 1) == 0 else logging.DEBUG
        logger.log(level, "CBF %s: %s, %s [%d so far]", self.form, reason, action, n)

    def _count_status(self, status: int) -> str:
        """Count an unsolved OSQP outcome; the reason for the log."""
        if status in _INFEASIBLE:
            self.stats.infeasible += 1
        else:
            self.stats.failed += 1
        return _status_reason(status)


def _check_uncertainty(values, n: int, name: str) -> tuple[np.ndarray, bool]:
    """(values as float64 [n], all finite); ValueError for a wrong shape or a negative entry."""
    c = np.asarray(values, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"{name} must be [{n}], got {c.shape}")
    if not n:
        return c, True
    lo = c.min()  # NaN propagates: NaN >= 0 is False; the sum is then finite iff no entry is inf
    if lo < 0:
        raise ValueError(f"{name} must be >= 0, got min {lo}")
    return c, lo >= 0 and math.isfinite(c.sum())


class DecentralizedCBF(_FilterBase):
    """Filter of ONE drone: `f(u_nom [2], p_i [2], neighbour_pos [K, 2], clearance [K] | None) -> u_safe [2]`.

    Keep one instance per drone: the OSQP problem is set up once and every call warm-starts from that
    drone's previous solution. `clearance` (arena units, ≥ 0) widens pair k's radius to D + clearance_k
    (for pose uncertainty: u_i + u_k, see the module doc). Row layout (m = K_max + 2 + S/2 rows,
    variable u_i [2]):
      0 .. K_max−1   pair slots: the K given neighbours (the nearest K_max if more; nearest by
                     distance − clearance) in order; unused slots and implied rows are relaxed
      K_max          u_x arena row,  K_max + 1  u_y arena row
      K_max + 2 ..   speed polygon rows
    The evasion problem (variables u_x, u_y, t) has the same pair slots (with −t), the two wall rows,
    EVASION_POLYGON/2 rotated polygon rows and the row t ≤ 2 v_max. `fell_back` says whether the last
    call evaded or braked; `agent_index` picks the pseudo-normal of a coincident neighbour.
    """

    form = "decentralized"

    def __init__(self, safety_radius: float, v_max: float, max_neighbours: int = 16, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, osqp_settings: dict | None = None,
                 fast_path: bool = True, agent_index: int | None = None,
                 log_counts: Counter | None = None) -> None:
        super().__init__(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon, log_counts)
        if max_neighbours < 1:
            raise ValueError(f"max_neighbours must be >= 1, got {max_neighbours}")
        k, s = int(max_neighbours), len(self.poly_normals)
        self.max_neighbours = k
        self.agent_index = next(_agent_counter) if agent_index is None else int(agent_index)
        self.fell_back = False
        self._ax_row = k  # index of the u_x arena row; u_y is the next one
        rows = np.concatenate([np.tile(np.arange(k), 2), [k, k + 1], np.repeat(np.arange(s), 2) + k + 2])
        cols = np.concatenate([np.repeat([0, 1], k), [0, 1], np.tile([0, 1], s)])
        a, self._perm = _pattern(rows, cols, (k + 2 + s, 2))
        # values in (rows, cols) order: pair normals x then y, arena ones, polygon normals
        self._vals = np.concatenate([np.ones(2 * k), [1.0, 1.0], self.poly_normals.ravel()])
        self._pair_vals = self._vals[: 2 * k].reshape(2, k)  # view: row 0 = n_x, row 1 = n_y
        self._qp = _Qp(a, {**DEFAULT_OSQP_SETTINGS, **(osqp_settings or {})}, fast_path)
        self._qp.l[k + 2:], self._qp.u[k + 2:] = -self.poly_bound, self.poly_bound
        self._g4 = self.gamma / 4.0
        self._c1 = self._g4 * (self.safety_radius * self.safety_radius)  # as c1 with clearance 0, bit for bit
        self._setup_evasion(fast_path)

    # ------------------------------------------------------------------ evasion problem

    def _setup_evasion(self, fast_path: bool) -> None:
        k, f = self.max_neighbours, EVASION_POLYGON // 2
        rows = np.concatenate([np.tile(np.arange(k), 3), [k, k + 1], np.repeat(np.arange(f), 2) + k + 2,
                               [k + 2 + f]])
        cols = np.concatenate([np.repeat([0, 1, 2], k), [0, 1], np.tile([0, 1], f), [2]])
        a, self._ev_perm = _pattern(rows, cols, (k + 3 + f, 3))
        self._ev_vals = np.concatenate([np.ones(2 * k), -np.ones(k), [1.0, 1.0], np.ones(2 * f), [1.0]])
        self._ev_pair = self._ev_vals[: 2 * k].reshape(2, k)
        self._ev_poly = self._ev_vals[3 * k + 2: 3 * k + 2 + 2 * f].reshape(f, 2)
        # a vertex of the 16-gon at angle θ: its normals at θ − π/S + 2πs/S
        self._ev_angles = -math.pi / EVASION_POLYGON + 2 * math.pi * np.arange(f) / EVASION_POLYGON
        self._ev_bound = self.v_max * math.cos(math.pi / EVASION_POLYGON)
        self._ev_eps = 0.05 / self.v_max
        self._ev = _Qp(a, {**DEFAULT_OSQP_SETTINGS, **EVASION_SETTINGS}, fast_path,
                       p_diag=np.array([self._ev_eps, self._ev_eps, 0.0]))
        ev = self._ev
        ev.l[k + 2: k + 2 + f], ev.u[k + 2: k + 2 + f] = -self._ev_bound, self._ev_bound
        ev.l[k + 2 + f], ev.u[k + 2 + f] = -INF, 2.0 * self.v_max
        ev.q[2] = -1.0

    @property
    def evasion_solver(self) -> osqp.OSQP:
        """The evasion problem's OSQP object (set up once in __init__, like `solver`)."""
        return self._ev.solver

    def _wall_bounds(self, p: float) -> tuple[float, float]:
        """Evasion bounds of one velocity axis at position p: the QP's rows inside L; beyond L no
        further out (hold); beyond the arena edge back in, at most v_max cos(π/16)/√2 per axis."""
        g, lim, edge, back = self.gamma_arena, self.limit, self.arena_half, self._ev_bound / math.sqrt(2.0)
        hi = max(g * (lim - p), min(0.0, max(g * (edge - p), -back)))
        lo = min(-g * (lim + p), max(0.0, min(-g * (edge + p), back)))
        return lo, hi

    def _evade(self, ux: float, uy: float, px: float, py: float, k: int, reason: str) -> np.ndarray:
        """The velocity that best separates the drone from the pair rows 0..k−1 now in the QP data
        (normals in `_pair_vals`, demanded rates in `_qp.l`, −INF = relaxed); see the module doc."""
        ev, kmax, v = self._ev, self.max_neighbours, self.v_max
        theta = None
        if k:
            r = self._qp.l[:k]
            np.minimum(r, v, out=ev.l[:k])
            self._ev_pair[:, :k] = self._pair_vals[:, :k]
            j = int(np.argmax(r))
            if r[j] > -INF:
                theta = math.atan2(self._pair_vals[1, j], self._pair_vals[0, j])
        ev.l[k:kmax] = -INF
        s = math.hypot(ux, uy)
        if s > v:
            ux, uy = ux * v / s, uy * v / s
        if theta is None:  # no neighbour in conflict (a wall, or a failed solve): keep u_nom's heading
            theta = math.atan2(uy, ux)
        ang = self._ev_angles + theta
        self._ev_poly[:, 0], self._ev_poly[:, 1] = np.cos(ang), np.sin(ang)
        (ev.l[kmax], ev.u[kmax]), (ev.l[kmax + 1], ev.u[kmax + 1]) = self._wall_bounds(px), self._wall_bounds(py)
        ev.q[0], ev.q[1] = -self._ev_eps * ux, -self._ev_eps * uy
        np.take(self._ev_vals, self._ev_perm, out=ev.ax)
        x, status = ev.solve()
        if x is None:
            return self._brake(f"{reason}, evasion {_status_reason(status)}")
        self.stats.evade += 1
        self.stats.fallback += 1
        self.fell_back = True
        self._log(reason, "evading")
        out = x[:2].copy()
        norm = math.hypot(out[0], out[1])
        if norm > v:
            out *= v / norm
        return out

    def _brake(self, reason: str) -> np.ndarray:
        self.stats.brake += 1
        self.stats.fallback += 1
        self.fell_back = True
        self._log(reason, "braking to zero velocity")
        return np.zeros(2)

    # ------------------------------------------------------------------ the filter

    def __call__(self, u_nom: np.ndarray, p_i: np.ndarray, neighbour_pos: np.ndarray,
                 clearance: np.ndarray | None = None) -> np.ndarray:
        """Closest safe velocity [2] to u_nom [2] for the drone at p_i [2] among neighbour_pos [K, 2],
        pair k kept D + clearance[k] apart (clearance [K] ≥ 0 or None)."""
        u_nom = np.asarray(u_nom, dtype=np.float64)
        p = np.asarray(p_i, dtype=np.float64)
        nb = np.asarray(neighbour_pos, dtype=np.float64)
        if u_nom.shape != (2,) or p.shape != (2,) or nb.ndim != 2 or nb.shape[1] != 2:
            raise ValueError(f"expected u_nom [2], p_i [2], neighbour_pos [K, 2]; got "
                             f"{u_nom.shape}, {p.shape}, {nb.shape}")
        if clearance is not None:
            clearance, finite = _check_uncertainty(clearance, len(nb), "clearance")
        self.stats.calls += 1
        self.fell_back = False
        ux, uy, px, py = float(u_nom[0]), float(u_nom[1]), float(p[0]), float(p[1])
        if not math.isfinite(ux + uy + px + py):
            self.stats.nonfinite += 1
            return self._brake("non-finite input")
        qp, kmax = self._qp, self.max_neighbours
        l, u = qp.l, qp.u
        d = p[:, None] - nb.T  # [2, K], column k = p_i − p_k; few numpy calls: each costs ~1 µs
        dist = np.hypot(d[0], d[1])
        k = len(dist)
        if clearance is None:  # the default path: no numpy call beyond the original ones
            c1 = self._c1
            if k > kmax:  # keep the nearest kmax
                keep = np.argpartition(dist, kmax - 1)[:kmax]
                d, dist, k = d[:, keep], dist[keep], kmax
        else:
            if not finite:
                self.stats.nonfinite += 1
                return self._brake("non-finite clearance")
            if k > kmax:  # keep the kmax with the least distance to spare
                keep = np.argpartition(dist - clearance, kmax - 1)[:kmax]
                d, dist, clearance, k = d[:, keep], dist[keep], clearance[keep], kmax
            radius = self.safety_radius + clearance
            c1 = self._g4 * (radius * radius)
        coincident = False
        if k:
            lo, hi = dist.min(), dist.max()  # NaN fails both comparisons below
            if not (lo >= _MIN_DIST and hi < math.inf):
                if not math.isfinite(lo + hi):
                    self.stats.nonfinite += 1
                    return self._brake("non-finite neighbour")
                coincident = True
                close = dist < _MIN_DIST
                dist = np.where(close, 1.0, dist)
            np.divide(d, dist, out=self._pair_vals[:, :k])
            rhs = c1 / dist - self._g4 * dist  # −γ h / (4|d|) = γ/4 (D²/|d| − |d|)
            l[:k] = np.where(rhs > -self.v_max, rhs, -INF)  # implied by the speed bound: relaxed
        l[k:kmax] = -INF
        g, lim, r = self.gamma_arena, self.limit, self._ax_row
        l[r], u[r], l[r + 1], u[r + 1] = -g * (lim + px), g * (lim - px), -g * (lim + py), g * (lim - py)
        if coincident:  # no normal: the pseudo-normal of this drone, maximal urgency; no QP
            self.stats.infeasible += 1
            ang = GOLDEN_ANGLE * self.agent_index
            self._pair_vals[0, :k][close], self._pair_vals[1, :k][close] = math.cos(ang), math.sin(ang)
            l[:k][close] = self.v_max
            return self._evade(ux, uy, px, py, k, "coincident neighbour")
        qp.q[0], qp.q[1] = -ux, -uy
        np.take(self._vals, self._perm, out=qp.ax)
        x, status = qp.solve()
        if x is None:
            return self._evade(ux, uy, px, py, k, self._count_status(status))
        self.stats.solved += 1
        norm = math.hypot(x[0], x[1])
        if norm > self.v_max:  # solver tolerance only; shrinking keeps every row with u = 0 feasible
            x *= self.v_max / norm
        return x


class CentralizedCBF(_FilterBase):
    """One QP for the swarm: `f(u_nom [N, 2], pos [N, 2], active [N] | None, uncertainty [N] | None)
    -> u_safe [N, 2]`; pair (i, j) is kept D + uncertainty_i + uncertainty_j apart.

    Variable x = (u_0x, u_0y, u_1x, ...) [2N]. Row layout (fixed for all calls):
      0 .. M−1          pairs (i, j), i < j, in np.triu_indices order, M = N(N−1)/2; rows of two
                        inactive drones and implied ("far") rows are relaxed to (−inf, inf)
      M + 2i, M + 2i+1  arena rows u_ix, u_iy; pinned to [0, 0] for inactive drones
      M + 2N + (S/2) i + s  speed polygon rows of drone i
    Inactive (landed) drones get u = 0 and stay obstacles for the active ones. When the swarm QP
    fails (or two drones coincide) every moving drone is filtered by one shared per-drone filter
    (`fallback_filter`: the decentralized rows with all other drones, and its evasion).
    `last_fallback` [N] marks the drones that evaded or braked in the last call.
    """

    form = "centralized"

    def __init__(self, n_agents: int, safety_radius: float, v_max: float, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, osqp_settings: dict | None = None,
                 fast_path: bool = True, log_counts: Counter | None = None) -> None:
        super().__init__(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon, log_counts)
        if n_agents < 1:
            raise ValueError(f"n_agents must be >= 1, got {n_agents}")
        n, s = int(n_agents), len(self.poly_normals)
        self.n_agents = n
        self._i, self._j = np.triu_indices(n, 1)
        m = len(self._i)
        self._m = m
        pr = np.tile(np.arange(m), 4)
        pc = np.concatenate([2 * self._i, 2 * self._i + 1, 2 * self._j, 2 * self._j + 1])
        ar = m + np.arange(2 * n)
        poly_r = m + 2 * n + np.repeat(np.arange(n * s), 2)
        poly_c = (2 * np.repeat(np.arange(n), s)[:, None] + np.array([0, 1])).ravel()
        rows = np.concatenate([pr, ar, poly_r])
        cols = np.concatenate([pc, np.arange(2 * n), poly_c])
        a, self._perm = _pattern(rows, cols, (m + 2 * n + n * s, 2 * n))
        self._vals = np.concatenate([np.ones(4 * m), np.ones(2 * n), np.tile(self.poly_normals.ravel(), n)])
        self._pair_vals = self._vals[: 4 * m].reshape(4, m)  # view: rows n_x, n_y, −n_x, −n_y
        settings = {**DEFAULT_OSQP_SETTINGS, **CENTRALIZED_SETTINGS, **(osqp_settings or {})}
        self._qp = _Qp(a, settings, fast_path)
        self._qp.l[m + 2 * n:], self._qp.u[m + 2 * n:] = -self.poly_bound, self.poly_bound
        self._g2 = self.gamma / 2.0
        self._c1 = self._g2 * (self.safety_radius * self.safety_radius)
        self.fallback_filter = DecentralizedCBF(
            self.safety_radius, self.v_max, max(n - 1, 1), self.arena_half, self.margin, self.gamma,
            self.gamma_arena, self.dt, self.n_polygon, fast_path=fast_path, agent_index=0,
            log_counts=self.log_counts)
        self.last_fallback = np.zeros(n, dtype=bool)

    def _assemble(self, u_nom: np.ndarray, pos: np.ndarray, moving: np.ndarray,
                  unc: np.ndarray | None) -> bool:
        """Write q, l, u and A's values for drones `moving` [N] (the others are pinned to u = 0);
        False (nothing written to the solver) if two involved drones coincide."""
        qp, m, n = self._qp, self._m, self.n_agents
        pt = pos.T
        d = pt[:, self._i] - pt[:, self._j]  # [2, M]: p_i − p_j for every pair i < j
        dist = np.hypot(d[0], d[1])
        keep = moving[self._i] | moving[self._j]  # a pair of two pinned drones constrains nothing
        if dist.min(initial=math.inf, where=keep) < _MIN_DIST:
            return False
        np.maximum(dist, _MIN_DIST, out=dist)  # coincident pinned drones: keep the row finite
        np.divide(d, dist, out=self._pair_vals[:2])
        np.negative(self._pair_vals[:2], out=self._pair_vals[2:])
        if unc is None:
            c1 = self._c1
        else:
            radius = self.safety_radius + unc[self._i] + unc[self._j]
            c1 = self._g2 * (radius * radius)
        rhs = c1 / dist - self._g2 * dist  # −γ h / (2|d|) = γ/2 (D²/|d| − |d|)
        keep &= rhs > -2 * self.v_max  # else implied by the speed bound: relaxed
        qp.l[:m] = np.where(keep, rhs, -INF)
        g, lim = self.gamma_arena, self.limit
        flat, move2 = pos.ravel(), np.repeat(moving, 2)
        qp.l[m:m + 2 * n] = np.where(move2, -g * (lim + flat), 0.0)
        qp.u[m:m + 2 * n] = np.where(move2, g * (lim - flat), 0.0)
        np.negative(np.where(move2, u_nom.ravel(), 0.0), out=qp.q)
        np.take(self._vals, self._perm, out=qp.ax)
        return True

    def _per_drone(self, u_nom: np.ndarray, pos: np.ndarray, moving: np.ndarray, unc: np.ndarray | None,
                   out: np.ndarray) -> np.ndarray:
        """Fallback: every moving drone through the per-drone filter, all other drones (inactive ones
        too: they are obstacles here) as neighbours. The per-drone rows of two drones add up to the
        swarm row, so this is the decentralized guarantee; drones in conflict evade."""
        fb, n = self.fallback_filter, self.n_agents
        evade, brake = fb.stats.evade, fb.stats.brake
        idx = np.arange(n)
        for i in np.flatnonzero(moving):
            others = idx != i
            fb.agent_index = i
            out[i] = fb(u_nom[i], pos[i], pos[others], None if unc is None else unc[i] + unc[others])
            self.last_fallback[i] = fb.fell_back
        self.stats.evade += fb.stats.evade - evade
        self.stats.brake += fb.stats.brake - brake
        return out

    def __call__(self, u_nom: np.ndarray, pos: np.ndarray, active: np.ndarray | None = None,
                 uncertainty: np.ndarray | None = None) -> np.ndarray:
        """Closest safe velocities [N, 2] (units/s); inactive drones and braked drones get 0."""
        n = self.n_agents
        u_nom, pos = np.asarray(u_nom, dtype=np.float64), np.asarray(pos, dtype=np.float64)
        active = np.ones(n, dtype=bool) if active is None else np.asarray(active)
        if u_nom.shape != (n, 2) or pos.shape != (n, 2) or active.shape != (n,) or active.dtype != bool:
            raise ValueError(f"expected u_nom [{n}, 2], pos [{n}, 2], active [{n}] bool; got "
                             f"{u_nom.shape}, {pos.shape}, {active.shape} {active.dtype}")
        unc, finite = (None, True) if uncertainty is None else _check_uncertainty(uncertainty, n, "uncertainty")
        st = self.stats
        st.calls += 1
        self.last_fallback[:] = False
        out = np.zeros((n, 2))
        if not (finite and math.isfinite(pos.sum())):
            # an obstacle at an unknown place: nothing is provably safe
            st.nonfinite += 1
            st.fallback += 1
            st.brake += int(active.sum())
            self.last_fallback[:] = active
            self._log("non-finite positions", "braking all drones")
            return out
        bad = active & ~np.isfinite(u_nom).all(axis=1)
        braked = bool(bad.any())
        if braked:  # those drones brake and stay obstacles; the others are still filtered
            st.nonfinite += 1
            st.brake += int(bad.sum())
            self.last_fallback |= bad
            self._log("non-finite command", f"braking drones {np.flatnonzero(bad).tolist()}")
        moving = active & ~bad
        if not self._assemble(u_nom, pos, moving, unc):
            st.infeasible += 1
            reason = "coincident drones"
        else:
            x, status = self._qp.solve()
            if x is not None:
                st.solved += 1
                st.fallback += braked
                out[:] = x.reshape(-1, 2)
                out[~moving] = 0.0
                norm = np.hypot(out[:, 0], out[:, 1])
                over = norm > self.v_max  # solver tolerance only, see DecentralizedCBF
                out[over] *= (self.v_max / norm[over])[:, None]
                return out
            reason = self._count_status(status)
        st.fallback += 1
        self._log(reason, "per-drone filters")
        return self._per_drone(u_nom, pos, moving, unc, out)


def make_decentralized_filter(safety_radius: float, v_max: float, max_neighbours: int = 16,
                              arena_half: float = 1.0, margin: float | None = None,
                              gamma: float | None = None, **kwargs) -> DecentralizedCBF:
    """Per-drone filter `f(u_nom [2], p_i [2], neighbour_pos [K, 2], clearance [K] | None) -> u_safe [2]`;
    see module doc.

    margin defaults to safety_radius / 2, gamma to 0.5 / dt (dt = 0.05 s). kwargs: gamma_arena, dt,
    n_polygon, osqp_settings, fast_path, agent_index, log_counts.
    """
    return DecentralizedCBF(safety_radius, v_max, max_neighbours, arena_half, margin, gamma, **kwargs)


def make_centralized_filter(n_agents: int, safety_radius: float, v_max: float, arena_half: float = 1.0,
                            margin: float | None = None, gamma: float | None = None,
                            **kwargs) -> CentralizedCBF:
    """Swarm filter `f(u_nom [N, 2], pos [N, 2], active [N] bool | None, uncertainty [N] | None)
    -> u_safe [N, 2]`."""
    return CentralizedCBF(n_agents, safety_radius, v_max, arena_half, margin, gamma, **kwargs)


def cbf_qp_cvxpy(u_nom: np.ndarray, pos: np.ndarray, safety_radius: float, v_max: float, *,
                 active: np.ndarray | None = None, decentralized: bool = False, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, solver: str = "CLARABEL",
                 uncertainty: np.ndarray | None = None) -> np.ndarray | None:
    """Reference solution [N, 2] of the same QP written directly from the textbook rows (unnormalized,
    no relaxed rows), solved by cvxpy; None if not optimal. decentralized=True solves every active
    drone's own QP with all other drones as neighbours; inactive drones get 0 in both forms.
    uncertainty [N]: pair (i, j) uses the radius D + uncertainty_i + uncertainty_j."""
    import cvxpy as cp  # heavy import, tests and benchmarks only

    ref = _FilterBase(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
    u_nom, pos = np.asarray(u_nom, dtype=np.float64), np.asarray(pos, dtype=np.float64)
    n = len(pos)
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    g, ga, lim = ref.gamma, ref.gamma_arena, ref.limit
    unc = np.zeros(n) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    radius = ref.safety_radius + unc[:, None] + unc[None, :]  # [N, N]
    out = np.zeros((n, 2))
    if decentralized:
        for i in np.flatnonzero(active):
            u = cp.Variable(2)
            d = pos[i] - np.delete(pos, i, axis=0)
            d2 = np.delete(radius[i], i) ** 2
            cons = [2 * d @ u >= -(g / 2) * ((d * d).sum(1) - d2)] if n > 1 else []
            cons += [u <= ga * (lim - pos[i]), -u <= ga * (lim + pos[i]),
                     cp.abs(ref.poly_normals @ u) <= ref.poly_bound]
            prob = cp.Problem(cp.Minimize(cp.sum_squares(u - u_nom[i])), cons)
            prob.solve(solver=solver)
            if prob.status != cp.OPTIMAL:
                return None
            out[i] = u.value
        return out
    u = cp.Variable((n, 2))
    i, j = np.triu_indices(n, 1)
    keep = active[i] | active[j]
    i, j = i[keep], j[keep]
    d, d2 = pos[i] - pos[j], radius[i, j] ** 2
    cons = [u[~active] == 0] if (~active).any() else []
    if len(i):
        cons.append(2 * cp.sum(cp.multiply(d, u[i] - u[j]), axis=1) >= -g * ((d * d).sum(1) - d2))
    act = np.flatnonzero(active)
    if len(act):
        cons += [u[act] <= ga * (lim - pos[act]), -u[act] <= ga * (lim + pos[act]),
                 cp.abs(u[act] @ ref.poly_normals.T) <= ref.poly_bound]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(u - np.where(active[:, None], u_nom, 0.0))), cons)
    prob.solve(solver=solver)
    return u.value if prob.status == cp.OPTIMAL else None


def random_safe_positions(rng: np.random.Generator, n: int, safety_radius: float, half: float,
                          max_tries: int = 100_000) -> np.ndarray:
    """n positions [n, 2] in [−half, half]², pairwise ≥ safety_radius (rejection sampling)."""
    pts = np.empty((0, 2))
    for _ in range(max_tries):
        c = rng.uniform(-half, half, 2)
        if not len(pts) or np.hypot(*(pts - c).T).min() >= safety_radius:
            pts = np.vstack([pts, c])
        if len(pts) == n:
            return pts
    raise ValueError(f"could not place {n} drones {safety_radius} apart in ±{half}")


def _toward_nearest(pos: np.ndarray, speed: float) -> np.ndarray:
    """Adversarial commands [N, 2]: every drone flies at `speed` straight at its nearest neighbour."""
    dd = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    np.fill_diagonal(dd, np.inf)
    to = pos[np.argmin(dd, axis=1)] - pos
    return speed * to / np.linalg.norm(to, axis=1, keepdims=True)


def bench_cbf(n_calls: int = 2000, seed: int = 0, cvxpy_calls: int = 20, n_agents: int = 50,
              neighbours: int = 10, safety_radius: float = 0.1, v_max: float = 0.5,
              dt: float = 0.05, uncertainty: float = 0.0) -> list[dict]:
    """Latency per filter call (p50/p99 ms, input checks and assembly included) vs cvxpy+CLARABEL on
    the same QPs. Every drone flies at v_max at its nearest neighbour. scenario "swarm": a closed-loop
    run (p ← p + u dt), so warm starts are those of a control loop; "random": a fresh safe placement
    every call (worst case for warm starting). Decentralized: neighbours + 1 drones, each with its own
    filter, all others as neighbours; n_calls calls. Centralized: n_agents drones, n_calls // 8 calls.
    uncertainty > 0: every drone's pose uncertainty (the clearance path; drones placed
    safety_radius + 2 uncertainty apart); 0 (default): the plain path, no clearance passed."""
    rng = np.random.default_rng(seed)
    rows = []
    for form, n, calls, half in (("decentralized", neighbours + 1, n_calls, 0.35),
                                 ("centralized", n_agents, max(n_calls // 8, 1), 0.9)):
        for scenario in ("swarm", "random"):
            filters = ([make_decentralized_filter(safety_radius, v_max) for _ in range(n)]
                       if form == "decentralized" else [make_centralized_filter(n, safety_radius, v_max)])
            spacing = safety_radius + 2 * uncertainty
            unc = np.full(n, uncertainty) if uncertainty > 0 else None
            clr = np.full(n - 1, 2 * uncertainty) if uncertainty > 0 else None
            pos = random_safe_positions(rng, n, spacing, half)
            times, cases = [], []
            while len(times) < calls:
                if scenario == "random":
                    pos = random_safe_positions(rng, n, spacing, half)
                u_nom = _toward_nearest(pos, v_max)
                cases.append((u_nom, pos))
                if form == "centralized":
                    t0 = time.perf_counter()
                    u = filters[0](u_nom, pos, None, unc)
                    times.append(time.perf_counter() - t0)
                else:
                    u = np.empty((n, 2))
                    for i in range(n):
                        nb = np.delete(pos, i, axis=0)
                        t0 = time.perf_counter()
                        u[i] = filters[i](u_nom[i], pos[i], nb, clr)
                        times.append(time.perf_counter() - t0)
                pos = pos + dt * u
            ref_times = []
            for u_nom, pos in cases[:cvxpy_calls]:
                t0 = time.perf_counter()  # decentralized: drone 0's own QP only
                cbf_qp_cvxpy(u_nom, pos, safety_radius, v_max, decentralized=form == "decentralized",
                             active=np.arange(n) == 0 if form == "decentralized" else None, uncertainty=unc)
                ref_times.append(time.perf_counter() - t0)
            p50, p99 = (float(np.percentile(times, q) * 1e3) for q in (50, 99))
            c50 = float(np.percentile(ref_times, 50) * 1e3)
            rows.append({"bench": "cbf", "form": form, "scenario": scenario,
                         "agents": 1 if form == "decentralized" else n,
                         "neighbours": n - 1, "calls": len(times), "p50_ms": p50, "p99_ms": p99,
                         "cvxpy_p50_ms": c50, "ratio": c50 / p50,
                         "fallbacks": sum(f.stats.fallback for f in filters)})
    return rows
