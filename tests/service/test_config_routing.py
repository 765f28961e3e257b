"""The service config refuses what it cannot use; routing picks models by modality, body part
and series description."""

from __future__ import annotations

import pytest

from medsight.errors import ConfigError
from medsight.service.config import RouteConfig, load_service_config, service_config_from_dict
from medsight.service.routing import InstanceFacts, Router


def test_unknown_key_is_refused_with_its_path():
    with pytest.raises(ConfigError, match=r"unknown key 'dicom.ae_titel'"):
        service_config_from_dict({"dicom": {"ae_titel": "X"}})


def test_route_to_an_unconfigured_model_is_refused():
    with pytest.raises(ConfigError, match="names models \\['ghost'\\]"):
        service_config_from_dict({"routing": [{"name": "r", "models": ["ghost"]}]})


@pytest.mark.parametrize("token", [{}, {"token": "a", "token_env": "B"}])
def test_a_token_needs_exactly_one_secret(token):
    with pytest.raises(ConfigError, match="exactly one of token"):
        service_config_from_dict({"auth": {"tokens": [{"name": "x", "role": "admin", **token}]}})


def test_bad_ae_title_and_regex_are_refused():
    with pytest.raises(ConfigError, match="AE title"):
        service_config_from_dict({"dicom": {"ae_title": "THIS-IS-LONGER-THAN-16"}})
    with pytest.raises(ConfigError, match="regular expression"):
        service_config_from_dict({"models": {"m": {"path": "x"}},
                                  "routing": [{"name": "r", "series_description": "([", "models": ["m"]}]})


def test_file_defaults_sqlite_in_storage_next_to_the_file(tmp_path):
    (tmp_path / "s.yaml").write_text("storage: {path: data}\n")
    cfg = load_service_config(tmp_path / "s.yaml")
    assert cfg.storage.path == str(tmp_path / "data")
    assert cfg.database_url == f"sqlite:///{tmp_path / 'data' / 'medsight.db'}"
    assert cfg.treatment.rules[0].above == 0.5 and cfg.treatment.default == "Maintain or reduce treatment"


def test_shipped_example_config_is_valid():
    from pathlib import Path

    cfg = load_service_config(Path(__file__).parents[2] / "configs" / "service.yaml")
    assert {r.name for r in cfg.routing} >= {"chest-xray", "chest-ct", "hippocampus-mr"}
    assert "hippocampus-mri" in cfg.models and cfg.outputs.send_seg


def test_the_example_config_routes_chest_ct_to_the_nodule_detector_by_body_part_or_description():
    from pathlib import Path

    cfg = load_service_config(Path(__file__).parents[2] / "configs" / "service.yaml")
    router = Router(cfg.routing, {"lung-nodule-ct": 3, "pneumonia-xray": 2})

    def nodule(modality, body_part=None, description=None):
        return "lung-nodule-ct" in router.match(InstanceFacts(modality, body_part, description)).series_models

    assert nodule("CT", "CHEST") and nodule("CT", "lung") and nodule("CT", "THORAX")  # the LIDC slabs say CHEST
    assert nodule("CT", None, "Thorax 1.25 mm") and nodule("CT", "", "LUNG SCREENING")  # no body part: description
    assert not nodule("CT", None, "ABDOMEN PELVIS") and not nodule("CT", None, None)
    assert not nodule("CT", "ABDOMEN", "chest abdomen")  # a body part that is given decides
    assert not nodule("MR", "CHEST") and not nodule("CR", "CHEST")
    (rule,) = [r for r in cfg.alerts.rules if r.kind == "nodule"]
    assert (rule.value, rule.category, rule.model) == (8, "4A", "lung-nodule-ct")


def test_router_splits_2d_3d_and_missing_models():
    routes = [RouteConfig(name="cxr", modalities=["CR", "DX"], body_parts=["CHEST"], models=["pneu"]),
              RouteConfig(name="ct", modalities=["CT"], models=["nodule", "ct3d"]),
              RouteConfig(name="brain", modalities=["MR"], series_description="t1.*post", models=["resp"])]
    r = Router(routes, {"pneu": 2, "ct3d": 3})
    m = r.match(InstanceFacts("DX", "chest", "PA"))
    assert m.routes == ["cxr"] and m.instance_models == ["pneu"]
    assert r.match(InstanceFacts("CR", "HAND")).routes == []
    m = r.match(InstanceFacts("CT", "CHEST"))
    assert m.series_models == ["ct3d"] and m.missing_models == ["nodule"]
    assert r.match(InstanceFacts("MR", None, "T1 POST contrast")).missing_models == ["resp"]
    assert r.match(InstanceFacts("MR", None, "FLAIR")).routes == []
