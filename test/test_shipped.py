"""Which shipped model flies a scenario: the one trained for it, else a fitting LGTC model, else a
clear one-line error naming every model and why it does not fit."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lgtc_ros.policy.shipped import NoShippedModel, default_model, models_dir, shipped_models
from lgtc_ros.scenario import ResourceType, load_scenario, resolve_scenario


def scenario(name: str):
    return load_scenario(resolve_scenario(name))


def test_models_dir_finds_the_shipped_models():
    assert (models_dir() / "lgtc_paper_10x4.pt").is_file()  # the checkout's models/ (or the installed share/)
    names = [m.name for m in shipped_models()]
    assert names == sorted(names) and {"lgtc_discharge_5x3.pt", "lgtc_paper_10x4.pt"} <= set(names)
    assert all(m.meta is not None for m in shipped_models())  # every shipped .pt has its metadata


@pytest.mark.parametrize("name, model", [
    ("discharge_5x3", "lgtc_discharge_5x3.pt"),
    ("discharge_train_5x3", "lgtc_discharge_5x3.pt"),  # its training scenario
    ("paper_10x4", "lgtc_paper_10x4.pt"),
    ("scale_20x4", "lgtc_paper_10x4.pt"),  # same kinds and M = 4: the fitting LGTC model
    ("scale_50x10", "lgtc_scale_50x10.pt"),
    ("scale_30x10", "lgtc_scale_50x10.pt"),  # M = 10: the fitting LGTC model
    ("scale_100x10", "lgtc_scale_50x10.pt"),
    ("paper_100x4", "lgtc_scale_100x4.pt"),
    ("paper_50x4", "lgtc_scale_100x4.pt"),  # M = 4: the closest team size (100, not 10)
])
def test_the_model_for_each_scenario(name, model):
    assert default_model(scenario(name)) == models_dir() / model
    assert default_model(name) == models_dir() / model  # a bundled name works too


@pytest.mark.parametrize("name", ["scale_5x2"])
def test_no_model_for_another_consumer_count_is_a_clear_error(name):
    s = scenario(name)
    with pytest.raises(NoShippedModel) as err:
        default_model(s)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    assert f"'{name}'" in msg and f"M={s.n_consumers}" in msg
    assert "lgtc_paper_10x4.pt: trained for M=4 consumers" in msg
    assert "lgtc_scale_50x10.pt: trained for M=10 consumers" in msg
    assert "ippo_paper_10x4.pt: not an LGTC model (ippo)" in msg
    assert "model:=" in msg and "--policy" in msg and "--any-consumers" in msg


def test_any_consumers_takes_the_closest_consumer_count():
    m8 = dataclasses.replace(scenario("scale_50x10"), n_consumers=8, name="scale_50x8")
    assert default_model(m8, any_consumers=True).name == "lgtc_scale_50x10.pt"  # M 10 vs 8, not 4
    m6 = dataclasses.replace(m8, n_consumers=6, name="scale_50x6")
    assert default_model(m6, any_consumers=True).name == "lgtc_scale_100x4.pt"  # M 4 vs 6, not 10; N 100 vs 50, not 10
    assert default_model(scenario("scale_5x2"), any_consumers=True).name == "lgtc_discharge_5x3.pt"  # M 3 vs 4
    assert default_model(scenario("discharge_5x3"), any_consumers=True).name == "lgtc_discharge_5x3.pt"


def test_different_resource_kinds_fit_no_model():
    base = scenario("paper_10x4")
    s = dataclasses.replace(base, name="all_instant",
                            resources=tuple(ResourceType(r.name, "instantaneous") for r in base.resources))
    with pytest.raises(NoShippedModel, match=r"lgtc_paper_10x4.pt: resource kinds \[inst, inst, pers, pers\] "
                                             r"!= \[inst, inst, inst, inst\]"):
        default_model(s, any_consumers=True)


def fake(folder: Path, stem: str, scenario_name: str, m: int, kinds: list[str], consensus: bool = True,
         algo: str = "lgtc-ippo", trained_on: str | None = None, pt: bool = True, meta: dict | None = None) -> None:
    if pt:
        (folder / f"{stem}.pt").write_bytes(b"not a real model")
    meta = meta if meta is not None else {
        "format_version": 1, "shapes": {"M": m, "r": len(kinds)}, "consensus": consensus,
        "consumer_count_agnostic": True,
        "scenario": {"name": scenario_name, "resources": [{"name": f"t{i}", "kind": k} for i, k in enumerate(kinds)]},
        "training": {"args": {"algo": algo, "scenario": trained_on or scenario_name}},
    }
    (folder / f"{stem}.json").write_text(json.dumps(meta))


KINDS = ["instantaneous", "instantaneous", "persistent", "persistent"]


def test_error_message_names_each_model_and_why(tmp_path):
    fake(tmp_path, "a_peer", "paper_10x4", 3, KINDS, consensus=False, algo="momappo")
    fake(tmp_path, "b_other_kinds", "x", 3, ["persistent"] * 4)
    fake(tmp_path, "c_other_m", "y", 7, KINDS)
    fake(tmp_path, "d_old", "z", 3, KINDS, meta={"format_version": 0})
    (tmp_path / "e_no_meta.pt").write_bytes(b"")
    (tmp_path / "f_broken.pt").write_bytes(b"")
    (tmp_path / "f_broken.json").write_text("{not json")
    fake(tmp_path, "g_config", "z", 3, KINDS, pt=False)  # a JSON without a model is not a model
    with pytest.raises(NoShippedModel) as err:
        default_model(scenario("discharge_5x3"), folder=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"no shipped model fits scenario 'discharge_5x3' (M=3, r=4 kinds "
                          f"[inst, inst, pers, pers]) in {tmp_path}: ")
    for part in ("a_peer.pt: not an LGTC model (momappo)",
                 "b_other_kinds.pt: resource kinds [pers, pers, pers, pers] != [inst, inst, pers, pers]",
                 "c_other_m.pt: trained for M=7 consumers, not 3",
                 "d_old.pt: format_version 0 != 1",
                 "e_no_meta.pt: no metadata e_no_meta.json",
                 "f_broken.pt: unreadable metadata f_broken.json (JSONDecodeError)",
                 "model:=PATH.pt (ROS) or --policy PATH.pt (lgtc)"):
        assert part in msg
    assert "g_config" not in msg
    # in file-name order
    assert msg.index("a_peer") < msg.index("b_other") < msg.index("c_other") < msg.index("f_broken")


def test_an_empty_folder_says_so(tmp_path):
    with pytest.raises(NoShippedModel, match=r"in .*: none\. Pass a model"):
        default_model(scenario("paper_10x4"), folder=tmp_path)


def test_preference_trained_here_then_any_fitting_by_name(tmp_path):
    fake(tmp_path, "a_generic", "other_5x3", 3, KINDS)
    fake(tmp_path, "b_generic", "another_5x3", 3, KINDS)
    s = scenario("discharge_5x3")
    assert default_model(s, folder=tmp_path).name == "a_generic.pt"  # none trained here: first by name
    fake(tmp_path, "z_family", "elsewhere", 3, KINDS, trained_on="/runs/cfg/discharge_5x3.yaml")
    assert default_model(s, folder=tmp_path).name == "z_family.pt"  # trained on it (a path counts by stem)
    fake(tmp_path, "y_peer", "discharge_5x3", 3, KINDS, consensus=False, algo="ippo")
    assert default_model(s, folder=tmp_path).name == "z_family.pt"  # a peer trained here is never the default
