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

Fallback: input that is not finite, a degenerate pair (coincident drones), an infeasible QP, or any
OSQP status other than "solved" gives u = 0 (brake) for the affected drones; it is counted in
`filter.stats` and logged on the `lgtc_ros.safety` logger. Numerical trouble never raises; wrong
shapes or parameters (programming errors) raise ValueError.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import osqp
import scipy.sparse as sp

logger = logging.getLogger("lgtc_ros.safety")

INF = 1e30  # OSQP_INFTY: OSQP treats bounds at or beyond it as infinite
_SOLVED = int(osqp.SolverStatus.OSQP_SOLVED)
_INFEASIBLE = {int(osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE),
               int(osqp.SolverStatus.OSQP_PRIMAL_INFEASIBLE_INACCURATE)}
_EXCEPTION = -100  # our status for "OSQP raised or returned a non-finite solution"
_MIN_DIST = 1e-9  # closer than this the pair normal is undefined: treated as infeasible

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


@dataclass
class CBFStats:
    """Counters of one filter. `fallback` counts calls in which at least one drone was braked."""

    calls: int = 0
    solved: int = 0
    infeasible: int = 0   # OSQP primal infeasible, or coincident drones
    failed: int = 0       # any other OSQP status (max_iter, inaccurate, ...) or a solver exception
    nonfinite: int = 0    # NaN/inf in the input
    fallback: int = 0

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

    def __init__(self, a: sp.csc_matrix, settings: dict, fast_path: bool) -> None:
        m, n = a.shape
        full = sp.bmat([[a, None], [None, sp.csc_matrix(np.ones((1, 1)))]], format="csc")
        assert np.array_equal(full.indices[: a.nnz], a.indices)  # the anchor entry comes last
        self._q, self._l, self._u = np.zeros(n + 1), np.full(m + 1, -INF), np.full(m + 1, INF)
        self._q[n], self._l[m] = 1.0, 0.0
        self._ax = np.ones(a.nnz + 1)
        self.q, self.l, self.u, self.ax = self._q[:n], self._l[:m], self._u[:m], self._ax[: a.nnz]
        self._n = n
        self.solver = osqp.OSQP()
        self.solver.setup(sp.identity(n + 1, format="csc"), self._q, full, self._l, self._u, **settings)
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
            logger.warning("OSQP raised %r", exc)
            x, status = None, _EXCEPTION
        if x is not None and math.isfinite(x.sum()):
            return x[: self._n], status
        # a stalled iterate (e.g. duals diverging in a jam) is a bad warm start for the next call
        self.solver.warm_start(x=np.zeros(self._n + 1), y=np.zeros(len(self._l)))
        return None, status if x is None else _EXCEPTION


class _FilterBase:
    """Shared parameters, counters and fallback bookkeeping of both forms."""

    def __init__(self, safety_radius: float, v_max: float, arena_half: float, margin: float | None,
                 gamma: float | None, gamma_arena: float | None, dt: float, n_polygon: int) -> None:
        margin = safety_radius / 2 if margin is None else margin
        gamma = 0.5 / dt if gamma is None else gamma
        gamma_arena = gamma if gamma_arena is None else gamma_arena
        _check_params(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
        self.safety_radius, self.v_max, self.dt = float(safety_radius), float(v_max), float(dt)
        self.gamma, self.gamma_arena = float(gamma), float(gamma_arena)
        self.limit = float(arena_half - margin)  # L
        self.poly_normals, self.poly_bound = speed_polygon(v_max, n_polygon)
        self.stats = CBFStats()

    @property
    def solver(self) -> osqp.OSQP:
        """The one OSQP object, set up once in __init__ and only updated afterwards."""
        return self._qp.solver

    def _record(self, status: int, what: str) -> bool:
        """Count an OSQP outcome; True when solved, otherwise logged (the caller brakes)."""
        if status == _SOLVED:
            self.stats.solved += 1
            return True
        if status in _INFEASIBLE:
            self.stats.infeasible += 1
        else:
            self.stats.failed += 1
        logger.warning("CBF %s: OSQP status %d, braking to zero velocity", what, status)
        return False


class DecentralizedCBF(_FilterBase):
    """Filter of ONE drone: `f(u_nom [2], p_i [2], neighbour_pos [K, 2]) -> u_safe [2]` (units/s).

    Keep one instance per drone: the OSQP problem is set up once and every call warm-starts from that
    drone's previous solution. Row layout (m = K_max + 2 + S/2 rows, variable u_i [2]):
      0 .. K_max−1   pair slots: the K given neighbours (the nearest K_max if more) in order;
                     unused slots and implied rows are relaxed to (−inf, inf)
      K_max          u_x arena row,  K_max + 1  u_y arena row
      K_max + 2 ..   speed polygon rows
    """

    def __init__(self, safety_radius: float, v_max: float, max_neighbours: int = 16, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, osqp_settings: dict | None = None,
                 fast_path: bool = True) -> None:
        super().__init__(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
        if max_neighbours < 1:
            raise ValueError(f"max_neighbours must be >= 1, got {max_neighbours}")
        k, s = int(max_neighbours), len(self.poly_normals)
        self.max_neighbours = k
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
        self._c1 = self._g4 * self.safety_radius ** 2

    def _brake(self, reason: str) -> np.ndarray:
        self.stats.fallback += 1
        logger.warning("CBF decentralized: %s, braking to zero velocity", reason)
        return np.zeros(2)

    def __call__(self, u_nom: np.ndarray, p_i: np.ndarray, neighbour_pos: np.ndarray) -> np.ndarray:
        """Closest safe velocity [2] to u_nom [2] for the drone at p_i [2] among neighbour_pos [K, 2]."""
        u_nom = np.asarray(u_nom, dtype=np.float64)
        p = np.asarray(p_i, dtype=np.float64)
        nb = np.asarray(neighbour_pos, dtype=np.float64)
        if u_nom.shape != (2,) or p.shape != (2,) or nb.ndim != 2 or nb.shape[1] != 2:
            raise ValueError(f"expected u_nom [2], p_i [2], neighbour_pos [K, 2]; got "
                             f"{u_nom.shape}, {p.shape}, {nb.shape}")
        self.stats.calls += 1
        ux, uy, px, py = float(u_nom[0]), float(u_nom[1]), float(p[0]), float(p[1])
        if not math.isfinite(ux + uy + px + py):
            self.stats.nonfinite += 1
            return self._brake("non-finite input")
        qp, kmax = self._qp, self.max_neighbours
        l, u = qp.l, qp.u
        d = p[:, None] - nb.T  # [2, K], column k = p_i − p_k; few numpy calls: each costs ~1 µs
        dist = np.hypot(d[0], d[1])
        k = len(dist)
        if k > kmax:  # keep the nearest kmax
            keep = np.argpartition(dist, kmax - 1)[:kmax]
            d, dist, k = d[:, keep], dist[keep], kmax
        if k:
            lo, hi = dist.min(), dist.max()  # NaN fails both comparisons below
            if not (lo >= _MIN_DIST and hi < math.inf):
                bad = not math.isfinite(lo + hi)
                self.stats.nonfinite += bad
                self.stats.infeasible += not bad
                return self._brake("non-finite neighbour" if bad else "coincident neighbour")
            np.divide(d, dist, out=self._pair_vals[:, :k])
            rhs = self._c1 / dist - self._g4 * dist  # −γ h / (4|d|) = γ/4 (D²/|d| − |d|)
            l[:k] = np.where(rhs > -self.v_max, rhs, -INF)  # implied by the speed bound: relaxed
        l[k:kmax] = -INF
        g, lim, r = self.gamma_arena, self.limit, self._ax_row
        l[r], u[r], l[r + 1], u[r + 1] = -g * (lim + px), g * (lim - px), -g * (lim + py), g * (lim - py)
        qp.q[0], qp.q[1] = -ux, -uy
        np.take(self._vals, self._perm, out=qp.ax)
        x, status = qp.solve()
        if not self._record(status, "decentralized"):
            self.stats.fallback += 1
            return np.zeros(2)
        norm = math.hypot(x[0], x[1])
        if norm > self.v_max:  # solver tolerance only; shrinking keeps every row with u = 0 feasible
            x *= self.v_max / norm
        return x


class CentralizedCBF(_FilterBase):
    """One QP for the swarm: `f(u_nom [N, 2], pos [N, 2], active [N] | None) -> u_safe [N, 2]`.

    Variable x = (u_0x, u_0y, u_1x, ...) [2N]. Row layout (fixed for all calls):
      0 .. M−1          pairs (i, j), i < j, in np.triu_indices order, M = N(N−1)/2; rows of two
                        inactive drones and implied ("far") rows are relaxed to (−inf, inf)
      M + 2i, M + 2i+1  arena rows u_ix, u_iy; pinned to [0, 0] for inactive drones
      M + 2N + (S/2) i + s  speed polygon rows of drone i
    Inactive (landed) drones get u = 0 and stay obstacles for the active ones.
    """

    def __init__(self, n_agents: int, safety_radius: float, v_max: float, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, osqp_settings: dict | None = None,
                 fast_path: bool = True) -> None:
        super().__init__(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
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
        self._c1 = self._g2 * self.safety_radius ** 2

    def _brake(self, reason: str) -> None:
        self.stats.fallback += 1
        logger.warning("CBF centralized: %s, braking", reason)

    def _assemble(self, u_nom: np.ndarray, pos: np.ndarray, moving: np.ndarray) -> bool:
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
        rhs = self._c1 / dist - self._g2 * dist  # −γ h / (2|d|) = γ/2 (D²/|d| − |d|)
        keep &= rhs > -2 * self.v_max  # else implied by the speed bound: relaxed
        qp.l[:m] = np.where(keep, rhs, -INF)
        g, lim = self.gamma_arena, self.limit
        flat, move2 = pos.ravel(), np.repeat(moving, 2)
        qp.l[m:m + 2 * n] = np.where(move2, -g * (lim + flat), 0.0)
        qp.u[m:m + 2 * n] = np.where(move2, g * (lim - flat), 0.0)
        np.negative(np.where(move2, u_nom.ravel(), 0.0), out=qp.q)
        np.take(self._vals, self._perm, out=qp.ax)
        return True

    def __call__(self, u_nom: np.ndarray, pos: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Closest safe velocities [N, 2] (units/s); inactive drones and braked drones get 0."""
        n = self.n_agents
        u_nom, pos = np.asarray(u_nom, dtype=np.float64), np.asarray(pos, dtype=np.float64)
        active = np.ones(n, dtype=bool) if active is None else np.asarray(active)
        if u_nom.shape != (n, 2) or pos.shape != (n, 2) or active.shape != (n,) or active.dtype != bool:
            raise ValueError(f"expected u_nom [{n}, 2], pos [{n}, 2], active [{n}] bool; got "
                             f"{u_nom.shape}, {pos.shape}, {active.shape} {active.dtype}")
        st = self.stats
        st.calls += 1
        out = np.zeros((n, 2))
        if not math.isfinite(pos.sum()):  # an obstacle at an unknown place: nothing is provably safe
            st.nonfinite += 1
            self._brake("non-finite positions, all drones")
            return out
        bad = active & ~np.isfinite(u_nom).all(axis=1)
        braked = bool(bad.any())
        if braked:  # those drones brake and stay obstacles; the others are still filtered
            st.nonfinite += 1
            logger.warning("CBF centralized: non-finite command, braking drones %s",
                           np.flatnonzero(bad).tolist())
        moving = active & ~bad
        if not self._assemble(u_nom, pos, moving):
            st.infeasible += 1
            self._brake("coincident drones, all drones")
            return out
        x, status = self._qp.solve()
        if not self._record(status, "centralized"):
            st.fallback += 1
            return out
        st.fallback += braked
        out[:] = x.reshape(-1, 2)
        out[~moving] = 0.0
        norm = np.hypot(out[:, 0], out[:, 1])
        over = norm > self.v_max  # solver tolerance only, see DecentralizedCBF
        out[over] *= (self.v_max / norm[over])[:, None]
        return out


def make_decentralized_filter(safety_radius: float, v_max: float, max_neighbours: int = 16,
                              arena_half: float = 1.0, margin: float | None = None,
                              gamma: float | None = None, **kwargs) -> DecentralizedCBF:
    """Per-drone filter `f(u_nom [2], p_i [2], neighbour_pos [K, 2]) -> u_safe [2]`; see module doc.

    margin defaults to safety_radius / 2, gamma to 0.5 / dt (dt = 0.05 s). kwargs: gamma_arena, dt,
    n_polygon, osqp_settings, fast_path.
    """
    return DecentralizedCBF(safety_radius, v_max, max_neighbours, arena_half, margin, gamma, **kwargs)


def make_centralized_filter(n_agents: int, safety_radius: float, v_max: float, arena_half: float = 1.0,
                            margin: float | None = None, gamma: float | None = None,
                            **kwargs) -> CentralizedCBF:
    """Swarm filter `f(u_nom [N, 2], pos [N, 2], active [N] bool | None) -> u_safe [N, 2]`."""
    return CentralizedCBF(n_agents, safety_radius, v_max, arena_half, margin, gamma, **kwargs)


def cbf_qp_cvxpy(u_nom: np.ndarray, pos: np.ndarray, safety_radius: float, v_max: float, *,
                 active: np.ndarray | None = None, decentralized: bool = False, arena_half: float = 1.0,
                 margin: float | None = None, gamma: float | None = None, gamma_arena: float | None = None,
                 dt: float = 0.05, n_polygon: int = 8, solver: str = "CLARABEL") -> np.ndarray | None:
    """Reference solution [N, 2] of the same QP written directly from the textbook rows (unnormalized,
    no relaxed rows), solved by cvxpy; None if not optimal. decentralized=True solves every active
    drone's own QP with all other drones as neighbours; inactive drones get 0 in both forms."""
    import cvxpy as cp  # heavy import, tests and benchmarks only

    ref = _FilterBase(safety_radius, v_max, arena_half, margin, gamma, gamma_arena, dt, n_polygon)
    u_nom, pos = np.asarray(u_nom, dtype=np.float64), np.asarray(pos, dtype=np.float64)
    n = len(pos)
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    g, ga, lim, d2 = ref.gamma, ref.gamma_arena, ref.limit, ref.safety_radius ** 2
    out = np.zeros((n, 2))
    if decentralized:
        for i in np.flatnonzero(active):
            u = cp.Variable(2)
            d = pos[i] - np.delete(pos, i, axis=0)
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
    d = pos[i] - pos[j]
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
              dt: float = 0.05) -> list[dict]:
    """Latency per filter call (p50/p99 ms, input checks and assembly included) vs cvxpy+CLARABEL on
    the same QPs. Every drone flies at v_max at its nearest neighbour. scenario "swarm": a closed-loop
    run (p ← p + u dt), so warm starts are those of a control loop; "random": a fresh safe placement
    every call (worst case for warm starting). Decentralized: neighbours + 1 drones, each with its own
    filter, all others as neighbours; n_calls calls. Centralized: n_agents drones, n_calls // 8 calls."""
    rng = np.random.default_rng(seed)
    rows = []
    for form, n, calls, half in (("decentralized", neighbours + 1, n_calls, 0.35),
                                 ("centralized", n_agents, max(n_calls // 8, 1), 0.9)):
        for scenario in ("swarm", "random"):
            filters = ([make_decentralized_filter(safety_radius, v_max) for _ in range(n)]
                       if form == "decentralized" else [make_centralized_filter(n, safety_radius, v_max)])
            pos = random_safe_positions(rng, n, safety_radius, half)
            times, cases = [], []
            while len(times) < calls:
                if scenario == "random":
                    pos = random_safe_positions(rng, n, safety_radius, half)
                u_nom = _toward_nearest(pos, v_max)
                cases.append((u_nom, pos))
                if form == "centralized":
                    t0 = time.perf_counter()
                    u = filters[0](u_nom, pos)
                    times.append(time.perf_counter() - t0)
                else:
                    u = np.empty((n, 2))
                    for i in range(n):
                        nb = np.delete(pos, i, axis=0)
                        t0 = time.perf_counter()
                        u[i] = filters[i](u_nom[i], pos[i], nb)
                        times.append(time.perf_counter() - t0)
                pos = pos + dt * u
            ref_times = []
            for u_nom, pos in cases[:cvxpy_calls]:
                t0 = time.perf_counter()  # decentralized: drone 0's own QP only
                cbf_qp_cvxpy(u_nom, pos, safety_radius, v_max, decentralized=form == "decentralized",
                             active=np.arange(n) == 0 if form == "decentralized" else None)
                ref_times.append(time.perf_counter() - t0)
            p50, p99 = (float(np.percentile(times, q) * 1e3) for q in (50, 99))
            c50 = float(np.percentile(ref_times, 50) * 1e3)
            rows.append({"bench": "cbf", "form": form, "scenario": scenario,
                         "agents": 1 if form == "decentralized" else n,
                         "neighbours": n - 1, "calls": len(times), "p50_ms": p50, "p99_ms": p99,
                         "cvxpy_p50_ms": c50, "ratio": c50 / p50,
                         "fallbacks": sum(f.stats.fallback for f in filters)})
    return rows
