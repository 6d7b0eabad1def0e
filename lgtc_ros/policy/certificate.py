"""Contraction certificate of an LGTC policy: eq. (9)'s rate c as a worst case over every input.

    from lgtc_ros.policy.certificate import certify
    cert = certify(model)            # None for a network without the consensus state (ippo, momappo)
    cert.contraction_rate            # c* > 0: the state ODE contracts for every admissible input
    cert.state_bound                 # |x_iq(t)| <= this for all t (x(0) = 0, as the runtime starts)

`lgtc export` refuses a model with c* <= 0 (`export.NotContractive`) and writes the certificate
into the model's `.json` (`metadata_fields`); the agent and swarm nodes log it at start
(`describe_model`). `certify_exported` recomputes it from an exported TorchScript file (the
weights of eq. (6) are constants of its frozen graph), e.g. for models exported before this
existed.

Derivation (the ODE that `LGTC.integrate` integrates, see lgtc.py):

    dx_i/dt = -(tau + kappa + f_i) o x_i - (S x)_i A + f_i o B_f,   kappa_q = sum_k |A_kq|

with team state x [N,F], A = A_raw^T A_raw, B_f = tanh(B_raw). The inputs are f [N,F] (per
agent, f = relu(.) >= 0, no upper bound) and S [N,N], the row-normalized adjacency of the
radio graph: S_ij = 1/|N_i| >= 0 for j in N_i, S_ii = 0, row sum r_i = 1 with neighbours and 0
without (every r_i in [0, 1] is admitted below, so message loss or any sub-stochastic weighting
is covered). The Jacobian is J = -diag(tau + kappa + f) - A^T (x) S, and

    c(f, S) = -mu_inf(J) = min_{i,q} tau_q + kappa_q (1 - r_i) + f_iq            (eq. 9)

(row (i,q) of J: diagonal -(tau_q + kappa_q + f_iq), off-diagonal |.| sum r_i kappa_q since
S >= 0, S_ii = 0; a self-loop S_ii > 0 only raises c because A_qq >= 0 for A PSD: the formula
stays a lower bound). This is `LGTC.contraction_rate`, which training evaluates at *sampled*
inputs. The worst case over the admissible set {f >= 0} x {S >= 0, r_i in [0, 1]}: every term
is monotone, kappa_q >= 0 and f_iq >= 0, so the infimum is at f = 0 and r_i = 1:

    c* = inf_{f,S} c(f, S) = min_q tau_q

in closed form, exact (attained by an agent with a neighbour whose relu is off in feature q),
no interval arithmetic needed. tau here is the *exported* one: the step flies the constants
(A, leak = clamp(tau + kappa, -0.9/h), B_f) computed once in float32, so c* is computed in
float64 as min_q (leak_q - sum_k |A_kq|) from those constants (and from tau itself when the
network is at hand, taking the smaller): what is certified is what flies.

State bound. If tau >= 0 (implied by c* > 0), the box [-b, b]^F with b = max_q |B_f,q| < 1
(Assumption 1) is forward invariant for every admissible input, in continuous time and for the
fused semi-implicit step x <- (x + h(f B_f - (S x) A)) / (1 + h(tau + kappa + f)): with
|x|, |S x| <= b the numerator is at most b + h(f |B_f,q| + kappa_q b) <= b (1 + h(tau_q + kappa_q
+ f)) as f (|B_f,q| - b) <= 0 <= b tau_q. The runtime starts every drone at x = 0 and the
neighbours fly the same model, so |x| <= b for all time ([-1, 1] of Theorem 1 for any x(0) in
[-1, 1]^F; b is the tighter bound for x(0) = 0).

Per control step. The exported step applies `unfolds` = n such updates with the neighbour term
fixed (last tick's messages). With d = 1 + h(tau_q + kappa_q + f_iq), the tick map x -> x' of
the whole team is Lipschitz in the max-norm with factor, row (i,q),

    L_iq = d^-n + (1 - d^-n) r_i kappa_q / (tau_q + kappa_q + f_iq)
         = 1 - (1 - d^-n) c_iq / (tau_q + kappa_q + f_iq)

largest at f = 0, r = 1: L* = max_q 1 - (1 - (1 + h(tau_q + kappa_q))^-n) tau_q / (tau_q + kappa_q),
< 1 iff c* > 0 (`step_factor`). As in the paper, f and S are treated as inputs: the argmax
choice of the consumer that sets f switches with the state, so contraction holds between
switches (Theorem 2 needs nothing more). Not covered: float32 rounding inside the step.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

METHOD = "closed-form worst case of eq. (9) over f >= 0 (relu) and row-normalized S (row sums in [0,1])"


@dataclass(frozen=True)
class Certificate:
    contraction_rate: float
    """c* = min over every admissible f, S of eq. (9)'s c = min_q tau_q (exported constants)."""
    state_bound: float | None
    """|x| <= this for all t from x(0) = 0 (max_q |B_f,q|); None when tau >= 0 fails (no bound)."""
    step_factor: float | None
    """Max-norm Lipschitz factor of one control step (the `unfolds` fused updates), worst case;
    None without ode_dt/unfolds."""
    argmin_feature: int
    """The state feature q attaining c*."""
    coupling_bound: float
    """max_q kappa_q = max_q sum_k |A_kq| (the neighbour coupling, for the record)."""

    @property
    def certified(self) -> bool:
        return self.contraction_rate > 0.0


def certify_constants(tau, a, b_f, ode_dt: float | None = None, unfolds: int | None = None) -> Certificate:
    """The certificate from eq. (6)'s parameters: tau [F] (effective: leak - kappa for an exported
    step), A [F,F], B_f [F] (tensors or arrays; computed in float64)."""
    import torch

    tau = torch.as_tensor(tau).detach().to(torch.float64).reshape(-1)
    a = torch.as_tensor(a).detach().to(torch.float64)
    b_f = torch.as_tensor(b_f).detach().to(torch.float64).reshape(-1)
    if a.shape != (tau.numel(), tau.numel()) or b_f.numel() != tau.numel():
        raise ValueError(f"certificate: tau {tuple(tau.shape)}, A {tuple(a.shape)}, B_f {tuple(b_f.shape)} do not fit")
    if not (torch.isfinite(tau).all() and torch.isfinite(a).all() and torch.isfinite(b_f).all()):
        return Certificate(-math.inf, None, None, 0, math.inf)
    kappa = a.abs().sum(0)
    c = float(tau.min())
    q = int(tau.argmin())
    bound = float(b_f.abs().max()) if float(tau.min()) >= 0.0 else None
    factor = None
    if ode_dt is not None and unfolds is not None and c > 0.0:
        total = tau + kappa
        d = 1.0 + float(ode_dt) * total
        factor = float((1.0 - (1.0 - d.pow(-int(unfolds))) * tau / total).max())
    return Certificate(c, bound, factor, q, float(kappa.max()))


def certify(model) -> Certificate | None:
    """The certificate of an `ActorCritic` or an `LGTC` cell (the actor is what flies); None
    without the consensus state (no ODE)."""
    import torch

    cell = getattr(model, "actor", model)
    if not cell.consensus:
        return None
    with torch.no_grad():
        a, leak, b_f = cell.ode_constants()  # exactly what DroneStep / FusedActor store
        leak = leak.clamp_min(-0.9 / cell.ode_dt)
        a64 = a.to(torch.float64)
        exported_tau = leak.to(torch.float64) - a64.abs().sum(0)
        tau = torch.minimum(exported_tau, cell.tau.to(torch.float64))
    return certify_constants(tau, a, b_f, cell.ode_dt, cell.unfolds)


# ---------------------------------------------------------------------------- exported files


def _graph_constants(module) -> tuple:
    """(A, leak, B_f) of eq. (6) from an exported drone step: named buffers of a scripted module,
    else the constants of the frozen graph (`torch.jit.freeze` inlines them): A^T is the matrix
    of the `mv` with the neighbours' mean state, leak the constant added to f = relu(.) in the
    denominator, B_f the constant f is multiplied by."""
    buffers = dict(module.named_buffers())
    if "fused.ode_leak" in buffers:
        return buffers["fused.ode_a_t"].t(), buffers["fused.ode_leak"], buffers["fused.ode_bf"]
    if "ode_leak" in buffers and buffers["ode_a"].dim() == 2 and buffers["ode_a"].shape[0] > 1:
        return buffers["ode_a"], buffers["ode_leak"], buffers["ode_bf"]
    import torch

    def const(value):
        node = value.node()
        if node.kind() != "prim::Constant":
            return None
        try:
            out = value.toIValue()
        except RuntimeError:
            return None
        return out if isinstance(out, torch.Tensor) else None

    found: dict[str, list] = {"a_t": [], "leak": [], "bf": []}
    graph = module.graph
    nodes = list(graph.nodes())
    relus = {n.output().unique() for n in nodes if n.kind() == "aten::relu"}
    for n in nodes:
        ins = list(n.inputs())
        if n.kind() == "aten::mv" and len(ins) == 2:
            t = const(ins[0])
            if t is not None and t.dim() == 2 and t.shape[0] == t.shape[1]:
                found["a_t"].append(t)
        elif n.kind() in ("aten::add", "aten::mul") and len(ins) >= 2:
            for mine, other in ((ins[0], ins[1]), (ins[1], ins[0])):
                t = const(mine)
                if t is not None and t.dim() == 1 and other.unique() in relus:
                    found["leak" if n.kind() == "aten::add" else "bf"].append(t)
    f = getattr(module, "state_dim", None)
    picks = {k: [t for t in v if f is None or t.shape[0] == f] for k, v in found.items()}
    if any(len(v) != 1 for v in picks.values()):
        raise ValueError("the exported graph does not show the ODE constants of eq. (6) unambiguously "
                         f"(found {', '.join(f'{k}: {len(v)}' for k, v in picks.items())})")
    return picks["a_t"][0].t(), picks["leak"][0], picks["bf"][0]


def certify_exported(path: str | Path) -> Certificate | None:
    """The certificate of an exported model file (any export, with or without the fields in its
    `.json`), from the constants its step flies; None for a model without the consensus state.
    Raises `ModelError` for an unusable file, ValueError when the ODE cannot be found in it."""
    import torch

    from lgtc_ros.policy.export import load

    module, meta = load(path)
    if not meta.get("consensus"):
        return None
    a, leak, b_f = (t.detach() for t in _graph_constants(module))
    tau = leak.to(torch.float64) - a.to(torch.float64).abs().sum(0)
    lgtc = meta.get("lgtc", {}) if isinstance(meta.get("lgtc"), dict) else {}
    return certify_constants(tau, a, b_f, lgtc.get("ode_dt"), lgtc.get("unfolds"))


# ---------------------------------------------------------------------------- metadata, logs


def metadata_fields(cert: Certificate | None) -> dict:
    """The `.json` fields: contraction_rate, state_bound (null without the consensus state) and
    certificate (how, and what it assumes)."""
    if cert is None:
        return {"contraction_rate": None, "state_bound": None,
                "certificate": {"method": None, "certified": False,
                                "note": "no consensus state (ippo/momappo): no ODE, nothing to certify"}}
    return {"contraction_rate": cert.contraction_rate, "state_bound": cert.state_bound,
            "certificate": {"method": METHOD, "certified": cert.certified,
                            "step_contraction_factor": cert.step_factor,
                            "argmin_feature": cert.argmin_feature, "max_coupling_kappa": cert.coupling_bound,
                            "assumes": "x(0) = 0 (|x| <= 1 for any x(0) in [-1,1]); neighbours fly the same "
                                       "model; f, S as inputs (consumer choice switches between them)",
                            "see": "lgtc_ros/policy/certificate.py, docs/DECISIONS.md"}}


def describe(meta: dict | None) -> str:
    """One line for a log from a model's metadata (no torch): the certified c and state bound,
    or why there is none (exported before certificates, or no consensus state)."""
    if not isinstance(meta, dict):
        return "contraction: not certified (no metadata)"
    if "contraction_rate" not in meta:
        if meta.get("consensus") is False:
            return "contraction: n/a (no consensus state)"
        return "contraction: not certified (exported before certificates)"
    c, bound = meta.get("contraction_rate"), meta.get("state_bound")
    if c is None:
        return "contraction: n/a (no consensus state)"
    try:
        text = f"contraction rate c = {float(c):.4g} (certified for every input)"
        return text + (f", state bound |x| <= {float(bound):.4g}" if bound is not None else ", no state bound")
    except (TypeError, ValueError):
        return "contraction: not certified (malformed certificate in the metadata)"


def describe_model(model: str | Path | None, scenario=None, any_consumers: bool = False) -> str:
    """`describe` for the `.json` beside `model` (empty: the shipped model that fits `scenario`).
    Never raises: a log line must not stop a node."""
    try:
        if not model:
            from lgtc_ros.policy.shipped import default_model

            model = default_model(scenario, any_consumers=any_consumers)
        return describe(json.loads(Path(model).with_suffix(".json").read_text()))
    except Exception as exc:  # noqa: BLE001 - the model itself was checked when it was loaded
        return f"contraction: not certified ({type(exc).__name__} reading the metadata)"
