"""The contraction certificate (policy/certificate.py): a true lower bound of eq. (9)'s rate over
every admissible input, what `lgtc export` refuses and writes, what old models say."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgtc_ros.cli import main
from lgtc_ros.policy.certificate import (certify, certify_constants, certify_exported, describe, describe_model,
                                         metadata_fields)
from lgtc_ros.policy.export import ModelError, NotContractive, export, load
from lgtc_ros.policy.heads import ActorCritic, HeadConfig
from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, row_normalized
from lgtc_ros.policy.shipped import models_dir
from lgtc_ros.scenario import load_scenario, resolve_scenario

PAPER = load_scenario(resolve_scenario("paper_10x4"))
FIELDS = ("contraction_rate", "state_bound", "certificate")


def small(consensus: bool = True, seed: int = 0, **cfg) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(LGTCConfig(n_resources=4, feature_dim=8, state_dim=4, hidden_dim=8, consensus=consensus,
                                  **cfg), HeadConfig((16, 16)))


def cell_with(seed: int, fdim: int, tau_lo: float, coupling: float) -> LGTC:
    """An LGTC cell with arbitrary (also non-contractive) ODE weights."""
    g = torch.Generator().manual_seed(seed)
    cell = LGTC(LGTCConfig(n_resources=2, feature_dim=4, state_dim=fdim, hidden_dim=4))
    with torch.no_grad():
        cell.tau.copy_(tau_lo + torch.rand(fdim, generator=g) * 2.0)
        cell.A_raw.copy_(torch.randn(fdim, fdim, generator=g) * coupling)
        cell.B_raw.copy_(torch.randn(fdim, generator=g) * 2.0)
    return cell


def admissible_inputs(draw, n: int, fdim: int):
    """f >= 0 (relu range: zeros, tiny, huge) and a neighbour mask (empty rows included, any
    direction: message loss makes the graph asymmetric), row-normalized like the runtime."""
    f = torch.tensor(draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1e-3), st.floats(0.0, 50.0)),
                                   min_size=n * fdim, max_size=n * fdim)), dtype=torch.float32).reshape(n, fdim)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n))).reshape(n, n)
    mask &= ~torch.eye(n, dtype=torch.bool)
    return f, row_normalized(mask[None])[0]


# float32 row sums of 1/k (k neighbours) may exceed 1 by an ulp: kappa (1 - r) then dips ~1e-7 kappa
def slack(cell: LGTC) -> float:
    return 1e-6 * (1.0 + float(cell.kappa().detach().max()) + float(cell.tau.detach().abs().max()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 10_000), n=st.integers(1, 6), fdim=st.integers(1, 5),
       tau_lo=st.sampled_from([-1.5, -0.2, 0.0, 0.5]), coupling=st.sampled_from([0.0, 0.1, 1.0, 3.0]))
def test_certificate_is_a_lower_bound_of_the_sampled_contraction_rate(data, seed, n, fdim, tau_lo, coupling):
    cell = cell_with(seed, fdim, tau_lo, coupling)
    cert = certify(cell)
    f, s = admissible_inputs(data.draw, n, fdim)
    with torch.no_grad():
        sampled = float(cell.contraction_rate(f[None], s.sum(-1)[None])[0])   # training's c at this input
    assert sampled >= cert.contraction_rate - slack(cell)
    # ... and of -mu_inf of the Jacobian of the ODE integrated, built directly (not via lgtc.py)
    with torch.no_grad():
        tau, a, kappa = cell.tau.double(), cell.coupling().double(), cell.kappa().double()
        jac = -torch.diag((tau + kappa + f.double()).reshape(-1)) - torch.kron(s.double(), a.t().contiguous())
    mu_inf = float((jac.diagonal() + jac.abs().sum(1) - jac.diagonal().abs()).max())
    assert -mu_inf >= cert.contraction_rate - slack(cell)


def test_certificate_is_attained_so_it_is_the_worst_case_not_a_loose_bound():
    cell = cell_with(3, 5, -0.3, 1.0)
    cert = certify(cell)
    f = torch.rand(3, 5) + 0.5
    f[0, cert.argmin_feature] = 0.0                                # relu off in the argmin feature
    s = row_normalized(torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)[None])[0]
    with torch.no_grad():
        sampled = float(cell.contraction_rate(f[None], s.sum(-1)[None])[0])
    assert sampled == pytest.approx(cert.contraction_rate, abs=slack(cell))
    assert cert.contraction_rate == pytest.approx(float(cell.tau.min()), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), seed=st.integers(0, 10_000), n=st.integers(1, 5),
       tau_lo=st.sampled_from([0.01, 0.3, 1.0]), coupling=st.sampled_from([0.0, 0.3, 1.5]))
def test_step_factor_and_state_bound_hold_for_the_integrated_step(data, seed, n, tau_lo, coupling):
    """One control step of the team (every agent's `integrate`, neighbour means of the previous
    states) is a max-norm contraction by `step_factor`, and keeps |x| <= state_bound."""
    fdim = 3
    cell = cell_with(seed, fdim, tau_lo, coupling)
    cert = certify(cell)
    assert cert.certified and cert.step_factor < 1.0 and cert.state_bound < 1.0
    f, s = admissible_inputs(data.draw, n, fdim)
    g = torch.Generator().manual_seed(seed)

    def tick(x):
        with torch.no_grad():
            return cell.integrate(x, f, s @ x)

    x1 = (torch.rand(n, fdim, generator=g) * 2 - 1) * cert.state_bound
    x2 = (torch.rand(n, fdim, generator=g) * 2 - 1) * cert.state_bound
    gap = float((tick(x1) - tick(x2)).abs().max())
    assert gap <= cert.step_factor * float((x1 - x2).abs().max()) + 1e-5
    x = torch.zeros(n, fdim)
    for _ in range(30):
        x = tick(x)
        assert float(x.abs().max()) <= cert.state_bound + 1e-5


def test_negative_or_nan_tau_is_not_certified_and_has_no_bounds():
    cert = certify_constants(torch.tensor([0.5, -0.1]), torch.zeros(2, 2), torch.zeros(2), 0.3, 3)
    assert not cert.certified and cert.contraction_rate == pytest.approx(-0.1)
    assert cert.state_bound is None and cert.step_factor is None and cert.argmin_feature == 1
    nan = certify_constants(torch.tensor([float("nan"), 1.0]), torch.zeros(2, 2), torch.zeros(2))
    assert not nan.certified and nan.state_bound is None
    assert not certify_constants(torch.zeros(3), torch.eye(3), torch.zeros(3)).certified  # c = 0 is refused too


# ----------------------------------------------------------------------------- export


def non_contractive() -> ActorCritic:
    model = small()
    with torch.no_grad():
        model.actor.tau.mul_(-0.5)        # tau = -0.5: c* = -0.5 (the critic's ODE never flies)
    return model


def test_export_refuses_a_non_contractive_model_and_writes_nothing(tmp_path):
    with pytest.raises(NotContractive, match=r"not contractive.*c = -0.5 <= 0") as exc:
        export(non_contractive(), PAPER, tmp_path / "bad.pt")
    assert isinstance(exc.value, ModelError) and "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_refusal_is_one_line_exit_2_and_nothing_is_written(tmp_path, capsys):
    from lgtc_ros.policy.checkpoint import save_policy
    from lgtc_ros.train.ippo import Args

    policy = tmp_path / "policy.pt"
    save_policy(policy, non_contractive(), Args(feature_dim=8, state_dim=4, hidden=(16, 16)),
                "config/scenarios/paper_10x4.yaml")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["export", "--policy", str(policy), "--out", str(tmp_path / "bad.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lgtc: refusing to export bad.pt: not contractive"), err
    assert "c = -0.5 <= 0" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.pt"]      # no .pt, .json, temporary or lock


def test_contractive_model_exports_with_the_certificate_in_its_json(tmp_path, capsys):
    from lgtc_ros.policy.checkpoint import save_policy
    from lgtc_ros.train.ippo import Args

    model = small()
    policy, out = tmp_path / "policy.pt", tmp_path / "good.pt"
    save_policy(policy, model, Args(feature_dim=8, state_dim=4, hidden=(16, 16)), "config/scenarios/paper_10x4.yaml")
    capsys.readouterr()
    assert main(["export", "--policy", str(policy), "--out", str(out)]) == 0
    assert "contraction rate c = 1 (certified for every input), state bound |x| <=" in capsys.readouterr().out
    meta = json.loads(out.with_suffix(".json").read_text())
    cert = certify(model)
    assert meta["contraction_rate"] == pytest.approx(1.0, abs=1e-6) == cert.contraction_rate  # tau = 1 at init
    assert meta["state_bound"] == pytest.approx(float(model.actor.b_f().abs().max())) and meta["state_bound"] < 1
    assert meta["certificate"]["certified"] is True and "eq. (9)" in meta["certificate"]["method"]
    assert 0 < meta["certificate"]["step_contraction_factor"] < 1
    _, loaded = load(out, PAPER)                                  # the reader takes the new fields
    assert loaded["contraction_rate"] == meta["contraction_rate"]
    # recomputed from the constants the exported (frozen TorchScript) step flies: the same
    again = certify_exported(out)
    assert again.contraction_rate == pytest.approx(cert.contraction_rate, abs=1e-9)
    assert again.state_bound == pytest.approx(cert.state_bound, abs=1e-9)
    assert again.step_factor == pytest.approx(cert.step_factor, abs=1e-9)


def test_exported_certificate_matches_for_trained_like_weights(tmp_path):
    model = small(seed=4)
    with torch.no_grad():
        model.actor.tau.copy_(torch.rand(4) * 0.5 + 0.05)
        model.actor.A_raw.mul_(10)
    pt, _ = export(model, PAPER, tmp_path / "m.pt")
    cert, again = certify(model), certify_exported(pt)
    assert cert.certified and again.argmin_feature == cert.argmin_feature
    assert again.contraction_rate == pytest.approx(cert.contraction_rate, abs=1e-7)


@pytest.mark.parametrize("pooling", ["argmax", "weighted"])
def test_a_model_without_consensus_exports_with_a_null_certificate(tmp_path, pooling):
    pt, meta_path = export(small(consensus=False, pooling=pooling), PAPER, tmp_path / "ippo.pt")
    meta = json.loads(meta_path.read_text())
    assert meta["contraction_rate"] is None and meta["state_bound"] is None
    assert meta["certificate"]["certified"] is False and "no consensus state" in meta["certificate"]["note"]
    assert describe(meta) == "contraction: n/a (no consensus state)"
    assert certify_exported(pt) is None


# ----------------------------------------------------------------------------- old models, logs


def test_shipped_models_load_without_the_fields_and_are_certified_from_their_weights():
    shipped = models_dir() / "lgtc_paper_10x4.pt"
    _, meta = load(shipped, PAPER)
    assert not set(FIELDS) & set(meta)                      # exported before certificates: still loads
    assert describe(meta) == "contraction: not certified (exported before certificates)"
    assert describe_model(str(shipped)) == describe(meta)
    for name in ("lgtc_paper_10x4", "lgtc_discharge_5x3"):
        cert = certify_exported(models_dir() / f"{name}.pt")
        assert cert.certified and cert.contraction_rate > 1.0 and cert.state_bound < 1.0 and cert.step_factor < 0.5
    assert certify_exported(models_dir() / "ippo_paper_10x4.pt") is None


def test_describe_for_the_node_log_never_raises(tmp_path):
    assert describe_model(tmp_path / "nothing.pt").startswith("contraction: not certified (")
    assert describe_model("", PAPER) == "contraction: not certified (exported before certificates)"  # the shipped one
    assert describe(None) == "contraction: not certified (no metadata)"
    assert "malformed" in describe({"contraction_rate": "x", "state_bound": 1})
    good = metadata_fields(certify_constants(torch.ones(2), torch.zeros(2, 2), torch.full((2,), 0.5)))
    assert describe(good) == "contraction rate c = 1 (certified for every input), state bound |x| <= 0.5"
    assert json.loads(json.dumps(good)) == good and not math.isnan(good["contraction_rate"])
