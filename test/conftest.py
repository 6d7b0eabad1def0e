"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch

from lgtc_ros.policy.export import export
from lgtc_ros.policy.heads import ActorCritic, HeadConfig
from lgtc_ros.policy.lgtc import LGTCConfig
from lgtc_ros.scenario import load_scenario, resolve_scenario


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A small untrained LGTC policy exported for paper_10x4 (seeded): fast, and exact to compare."""
    torch.manual_seed(0)
    model = ActorCritic(LGTCConfig(n_resources=4, feature_dim=16, state_dim=8, hidden_dim=16), HeadConfig((32, 32)))
    pt, _ = export(model, load_scenario(resolve_scenario("paper_10x4")), tmp_path_factory.mktemp("m") / "m.pt")
    return pt


@pytest.fixture
def one_torch_thread():
    """torch at 1 thread for the test, as the per-drone code and the studies run it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
