import pytest

from qlite.lm import (QuantumAdapterConfig, QuantumFFNConfig, QuantumLoRAConfig, UnitaryAdapterConfig,
                      config_from_dict, config_from_json)

CONFIGS = [QuantumAdapterConfig(n_qubits=6, spectrum_layers=3, norm="none", scale=0.5),
           QuantumFFNConfig(n_qubits=4, heads=3, entangler="cnot"),
           QuantumLoRAConfig(r=2, hidden=(16, 8), features="free", scope="layer", activation="none"),
           UnitaryAdapterConfig(r=3, depth=5, entangler="cnot")]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_json_round_trip(cfg):
    assert config_from_json(cfg.to_json()) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("make, match", [
    (lambda: QuantumAdapterConfig(n_qubits=0), "n_qubits"),
    (lambda: QuantumAdapterConfig(n_qubits=40), "n_qubits"),
    (lambda: QuantumAdapterConfig(encoding="rq"), "encoding"),
    (lambda: QuantumAdapterConfig(scale=float("nan")), "scale"),
    (lambda: QuantumFFNConfig(heads=0), "heads"),
    (lambda: QuantumLoRAConfig(r=0), "r must"),
    (lambda: QuantumLoRAConfig(hidden=()), "hidden"),
    (lambda: QuantumLoRAConfig(features="noise"), "features"),
    (lambda: UnitaryAdapterConfig(r=True), "r must"),
    (lambda: UnitaryAdapterConfig(entangler="swap"), "entangler"),
])
def test_bad_values_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unknown_type_or_field():
    with pytest.raises(ValueError, match="not a qlite.lm config"):
        config_from_dict({"type": "LoraConfig"})
    with pytest.raises(ValueError, match="no fields"):
        config_from_dict({"type": "UnitaryAdapterConfig", "rank": 2})


def test_ffn_for_budget_is_the_largest_that_fits():
    cfg = QuantumFFNConfig.for_budget(48, 48, 5000, n_qubits=4)
    assert cfg.parameters_for(48, 48) <= 5000 < cfg.replace(heads=cfg.heads + 1).parameters_for(48, 48)
    with pytest.raises(ValueError, match="even one head"):
        QuantumFFNConfig.for_budget(48, 48, 100, n_qubits=4)
