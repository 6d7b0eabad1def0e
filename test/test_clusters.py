"""The hierarchical-cluster variant of LGTC-IPPO (`LGTCConfig.clusters`, issue 12 point 2)."""
from __future__ import annotations

import pytest
import torch
import yaml

from lgtc_ros.evaluate import rollout
from lgtc_ros.policy.checkpoint import load_policy
from lgtc_ros.policy.export import ModelKindError, export
from lgtc_ros.policy.heads import cluster_inputs
from lgtc_ros.policy.learned import ClusteredPolicy, LearnedPolicy
from lgtc_ros.policy.lgtc import LGTC, LGTCConfig, row_normalized
from lgtc_ros.runtime.drone import load_drone_modules
from lgtc_ros.scenario import load_scenario
from lgtc_ros.train.ippo import Trainer
from test_ippo import SMALL, small_args

# two consumers: with one, attention has nothing to choose and the cluster keys no gradient
TWO = dict(SMALL, name="reach_4x2", n_agents=4, n_consumers=2)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cluster_inputs_by_hand():
    # drones 0 and 1 chose consumer 1, drone 2 chose consumer 0, drone 3 has not sent yet
    demand = torch.tensor([[[0.5, 0.0], [0.9, 0.4]]])                         # [1,M=2,r=2]
    choice = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    supply = torch.tensor([[[0.3, 0.0], [0.2, 0.1], [0.4, 0.0], [9.0, 9.0]]])
    valid = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    h, feat = cluster_inputs(demand, choice, supply, valid)
    assert torch.equal(h[0], torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.0]]))
    # drone 0 sees consumer 1 short of what drone 1 brings, consumer 0 short of drone 2's
    assert torch.allclose(feat[0, 0], torch.tensor([[0.1, 0.0, 1.0], [0.7, 0.3, 1.0]]))
    # drone 2, the only member of consumer 0's cluster, does not count itself
    assert torch.allclose(feat[0, 2], torch.tensor([[0.5, 0.0, 0.0], [0.4, 0.3, 1.0]]))
    # drone 3 (nothing sent) is in no cluster but hears them all
    assert torch.allclose(feat[0, 3], torch.tensor([[0.1, 0.0, 1.0], [0.4, 0.3, 1.0]]))


def test_contraction_rate_with_clusters_equals_minus_lognorm_of_the_jacobian():
    torch.manual_seed(3)
    cell = LGTC(LGTCConfig(n_resources=2, feature_dim=4, state_dim=3, hidden_dim=8, clusters=True))
    n, fdim = 4, 3
    S = row_normalized(torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)[None])[0]
    H = row_normalized(torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)[None])[0]
    f = torch.rand(n, fdim)
    A, Ah = cell.coupling(), cell.cluster_coupling()
    leak = cell.ode_constants()[1]

    def rhs(xflat):  # dx/dt = -(tau + kappa + kappa_h + f) x - S x A - H x A_h + f B_f
        x = xflat.reshape(n, fdim)
        return (-(leak + f) * x - S @ x @ A - H @ x @ Ah + f * cell.b_f()).reshape(-1)

    J = torch.autograd.functional.jacobian(rhs, torch.zeros(n * fdim))
    mu_inf = (J.diagonal() + (J.abs().sum(1) - J.diagonal().abs())).max()
    c = cell.contraction_rate(f[None], S.sum(-1)[None], H.sum(-1)[None])[0]
    assert torch.isclose(c, -mu_inf, atol=1e-5)
    assert cell.contraction_rate(f[None], S.sum(-1)[None])[0] <= c + 1e-7   # without H: a lower bound
    assert c >= 0


def test_states_stay_in_the_unit_box_with_clusters():
    torch.manual_seed(0)
    cell = LGTC(LGTCConfig(n_resources=2, feature_dim=8, state_dim=4, hidden_dim=8, clusters=True))
    kinds = torch.tensor([0.0, 1.0])
    x = torch.zeros(16, 4)
    for _ in range(20):
        big = lambda *s: (torch.rand(*s) * 2 - 1) * 50  # noqa: E731
        _, x, _, _ = cell.core(big(16, 2), big(16, 2).abs(), big(16, 3, 2), big(16, 3, 2).abs(), kinds, x,
                               big(16, 8), torch.rand(16, 4) * 2 - 1, big(16, 3), None,
                               torch.rand(16, 4) * 2 - 1, big(16, 3, 3))
        assert x.abs().max() <= 1.0 + 1e-6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A flat run, then the hierarchical variant started from it."""
    tmp = tmp_path_factory.mktemp("clusters")
    (tmp / "two.yaml").write_text(yaml.safe_dump(TWO))
    two = str(tmp / "two.yaml")
    Trainer(small_args(tmp / "flat", scenario=two, total_steps=16 * 30 * 2)).run()
    flat = tmp / "flat" / "run" / "policy.pt"
    args = small_args(tmp / "clu", scenario=two, total_steps=16 * 30 * 2, clusters=True, zero_s=True,
                      init_from=str(flat))
    Trainer(args).run()
    return tmp, flat, tmp / "clu" / "run" / "policy.pt", args


def test_a_flat_model_starts_the_variant_and_the_variant_learns_its_cluster_weights(trained):
    tmp, flat, clu, args = trained
    start = Trainer(small_args(tmp / "start", scenario=args.scenario, clusters=True, zero_s=True,
                               init_from=str(flat))).model.state_dict()
    flat_sd = load_policy(flat)[0].state_dict()
    assert all(torch.equal(start[k], v) for k, v in flat_sd.items())
    new = [k for k in start if k not in flat_sd]
    assert {k.split(".")[1] for k in new} == {"cluster_key", "A2", "Ah_raw"}
    assert all(float(start[k].abs().max()) == 0.0 for k in new if "Ah_raw" not in k)  # starts as the flat policy
    after = load_policy(clu)[0].state_dict()
    assert all(float(after[k].abs().max()) > 0.0 for k in new)                          # ...and learns them
    with pytest.raises(ValueError, match="clusters True vs False"):
        Trainer(small_args(tmp / "back", scenario=args.scenario, init_from=str(clu)))
    with pytest.raises(ValueError, match="lgtc-ippo"):
        small_args(tmp / "ippo", algo="ippo", clusters=True).validate()


def test_the_variant_flies_batched_and_is_refused_where_it_cannot_fly(trained):
    tmp, _, clu, args = trained
    scenario = load_scenario(args.scenario)
    policy = LearnedPolicy.load(clu, scenario)
    assert isinstance(policy, ClusteredPolicy)
    first = rollout(scenario, policy, 2, seed=5)[0].returns
    again = rollout(scenario, LearnedPolicy.load(clu, scenario), 2, seed=5)[0].returns
    assert first.tolist() == again.tolist() and (first != 0).any()
    with pytest.raises(ModelKindError, match="no per-drone step"):
        export(load_policy(clu)[0], scenario, tmp / "clu.pt")
    assert not (tmp / "clu.pt").exists()
    with pytest.raises(ModelKindError, match="no per-drone step"):
        load_drone_modules(clu, scenario, 2)
