"""qlite.fit_many: seeds and settings of one architecture as one batched model, against separate fits."""

import copy

import pytest
import torch

import qlite
from qlite import QIREN, QuantumLayer, data
from qlite.models import MLP, RFFNet, SIREN
from qlite.training.many import fit_many
from qlite.training.stacked import AdamState, adam_step

SIG = data.function(lambda x: torch.sin(3 * x[:, 0]), 40)
SETTINGS = [{"lr": 0.01}, {"lr": 0.03, "weight_decay": 0.01, "betas": (0.8, 0.99)}, {"lr": 0.02, "schedule": "cosine"}]


def _seeded(build):
    def factory(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build().double()
    return factory


FACTORIES = {
    "qiren": _seeded(lambda: QIREN(1, 1, hidden_features=3, hidden_layers=1)),
    "mlp": _seeded(lambda: MLP(1, 1, 6)),
    "rff": _seeded(lambda: RFFNet(1, 1, 6)),
    "siren": _seeded(lambda: SIREN(1, 1, 6, first_omega_0=3.0, hidden_omega_0=3.0)),
}


def _pre_bn_biases(model):
    """Biases of Linear layers feeding a BatchNorm, with that BatchNorm's running mean: the loss does not depend
    on such a bias (BatchNorm subtracts the batch mean), so its gradient is rounding noise (~1e-15) that Adam
    scales by lr / eps into steps of ~1e-8; any other summation order (a batched kernel) gives other noise.
    Only bias - running_mean reaches the output, and that is compared instead."""
    pairs = {}
    for name, mod in model.named_modules():
        lin, norm = getattr(mod, "linear", None), getattr(mod, "norm", None)
        if isinstance(lin, torch.nn.Linear) and isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            p = f"{name}." if name else ""
            pairs[f"{p}linear.bias"] = f"{p}norm.running_mean"
    return pairs


def _null_directions(model):
    """Parameter entries the training loss does not depend on (gradient below 1e-11 in float64): e.g. a circuit's
    first RZ acting on |0> (a global phase) or its last RZ before a Z measurement. Their gradient is rounding
    noise, which Adam divides by sqrt(v) + eps: a batched kernel's other noise moves them by ~1e-10 where a
    separate fit moves them by its own; the function (compared on new points) does not see them."""
    model = copy.deepcopy(model).train()  # a train-mode forward moves the running statistics: on a copy
    loss = ((model(SIG.coords.double()) - SIG.values.double()) ** 2).mean()
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return {n: g.abs() < 1e-11 for n, g in zip(names, grads) if bool((g.abs() < 1e-11).any())}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("batch_size", [None, 16])
def test_matches_separate_fits_float64(kind, batch_size):
    factory = FACTORIES[kind]
    many = fit_many(factory, SIG, seeds=[0, 1], settings=SETTINGS, epochs=8, batch_size=batch_size, progress=False)
    assert [(r.config.seed, r.config.lr) for r in many] == [(s, st["lr"]) for s in (0, 1) for st in SETTINGS]
    for r in many:
        one = qlite.fit(factory(r.config.seed), SIG, r.config)
        assert r.history["epoch"] == one.history["epoch"] and r.history["lr"] == one.history["lr"]
        assert r.history["loss"] == pytest.approx(one.history["loss"], abs=1e-10, rel=0)
        for k, v in one.metrics.items():
            assert (r.metrics[k] is None) == (v is None) and (v is None or abs(r.metrics[k] - v) <= 1e-10)
        a, b = r.model.state_dict(), one.model.state_dict()
        assert list(a) == list(b)
        pairs = _pre_bn_biases(one.model)
        null = _null_directions(one.model)
        for k in b:
            if k in pairs:
                assert torch.allclose(a[k] - a[pairs[k]], b[k] - b[pairs[k]], rtol=0, atol=1e-10), k
            elif k not in pairs.values():
                d = (a[k].double() - b[k].double()).abs()
                if k in null:  # rounding noise scaled by Adam (see _null_directions), yet small
                    assert float(torch.cat([d[~null[k]], d.new_zeros(1)]).max()) <= 1e-10 and float(d.max()) <= 1e-6, k
                else:
                    assert float(d.max()) <= 1e-10, k
        coords = torch.linspace(-1.3, 1.3, 17, dtype=torch.float64)[:, None]  # new points: the function itself
        assert torch.allclose(qlite.predict(r.model, coords), qlite.predict(one.model, coords), rtol=0, atol=1e-10)
        assert not r.model.training and r.info["batched_models"] == 6 and r.params == one.params


def test_adam_step_equals_torch_adam():
    torch.manual_seed(0)
    hyper = [(0.01, (0.9, 0.999), 0.0), (0.1, (0.8, 0.99), 0.05), (0.003, (0.5, 0.9), 0.0)]
    ps = [torch.randn(4, 3, dtype=torch.float64) for _ in hyper]
    refs = [torch.nn.Parameter(p.clone()) for p in ps]
    opts = [torch.optim.Adam([q], lr=lr, betas=bt, weight_decay=wd) for q, (lr, bt, wd) in zip(refs, hyper)]
    stacked = torch.stack(ps)
    state = AdamState(0, [torch.zeros_like(stacked)], [torch.zeros_like(stacked)])
    for _ in range(5):
        gs = [torch.randn(4, 3, dtype=torch.float64) for _ in hyper]
        for q, g, o in zip(refs, gs, opts):
            q.grad = g.clone()
            o.step()
        adam_step([stacked], [torch.stack(gs)], state, lr=[h[0] for h in hyper], betas=[h[1] for h in hyper],
                  weight_decay=[h[2] for h in hyper])
    for i, q in enumerate(refs):
        assert torch.allclose(stacked[i], q.detach(), rtol=0, atol=1e-15)


def _mlp(width=6, **kw):
    return MLP(1, 1, width, **kw)


@pytest.mark.parametrize("models, match", [
    ([_mlp(6), _mlp(8)], r"models\[1\] differs from models\[0\]: attribute net.0.linear.out_features is 8 vs 6"),
    ([QIREN(1, 1, hidden_features=3, hidden_layers=0), QIREN(1, 1, hidden_features=2, hidden_layers=0)],
     r"models\[1\] differs from models\[0\]: attribute config\['hidden_features'\] is 2 vs 3"),
    ([torch.nn.Sequential(QuantumLayer(3)), torch.nn.Sequential(QuantumLayer(2))],
     r"attribute 0.circuit is Circuit\(n_qubits=2|attribute 0.config\['n_qubits'\] is 2 vs 3"),
    ([_mlp(), SIREN(1, 1, 6)], r"models\[1\] differs.*SIREN vs a MLP"),
    ([_mlp(activation="relu"), _mlp(activation="tanh")], r"models\[1\] differs.*activation|models\[1\] differs.*Tanh"),
    ([_mlp(), _mlp().double()], r"models\[1\] differs.*dtype torch.float64 vs torch.float32"),
    ([SIREN(1, 1, 6, first_omega_0=1.0), SIREN(1, 1, 6, first_omega_0=30.0)], r"omega_0 is 30.0 vs 1.0"),
])
def test_mismatched_architectures_are_refused(models, match):
    with pytest.raises(ValueError, match=match):
        fit_many(models, SIG, epochs=1, progress=False)


def test_bad_input_is_refused_as_fit_refuses_it():
    with pytest.raises(ValueError, match="lr must be a positive finite number, got -1"):
        fit_many([_mlp(), _mlp()], SIG, settings=[{"lr": 0.01}, {"lr": -1}], epochs=1)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        fit_many([_mlp()], SIG, epochs=1, lr=float("nan"))
    with pytest.raises(ValueError, match="seed must be an int, got 1.5"):
        fit_many(lambda s: _mlp(), SIG, seeds=[0, 1.5], epochs=1)
    with pytest.raises(ValueError, match="seed must be an int"):
        fit_many([_mlp()], SIG, settings=[{"seed": "a"}], epochs=1)
    with pytest.raises(ValueError, match="with a model factory, pass seeds"):
        fit_many(lambda s: _mlp(), SIG, epochs=1)
    with pytest.raises(ValueError, match="settings has 1 entries for 2 models"):
        fit_many([_mlp(), _mlp()], SIG, settings=[{"lr": 0.1}], epochs=1)
    with pytest.raises(ValueError, match="lockstep, so epochs must be the same"):
        fit_many([_mlp(), _mlp()], SIG, settings=[{"epochs": 1}, {"epochs": 2}])
    with pytest.raises(TypeError, match="unknown options"):
        fit_many([_mlp()], SIG, epochs=1, lrr=0.1)
    with pytest.raises(ValueError, match="share parameters"):
        m = _mlp()
        fit_many([m, m], SIG, epochs=1)
    with pytest.raises(ValueError, match="build it with out_features=1"):
        fit_many([MLP(1, 2, 4), MLP(1, 2, 4)], SIG, epochs=1, progress=False)
    with pytest.raises(FloatingPointError, match="run 1 of fit_many"):
        fit_many(FACTORIES["mlp"], SIG, seeds=[0], settings=[{"lr": 1e-3}, {"lr": 1e300}], epochs=3, progress=False)
    assert callable(qlite.fit_many)


def test_compare_batched_matches_separate():
    from qlite.comparison import Candidate, compare
    from qlite.models import ModelSpec

    sig = data.function(lambda x: torch.sin(3 * x[:, 0]), 24)
    models = {"tanh a": Candidate(ModelSpec("tanh", hidden_features=4), {"lr": 0.01}),
              "tanh b": Candidate(ModelSpec("tanh", hidden_features=4), {"lr": 0.03}),  # joins tanh a's batch
              "siren": ModelSpec("siren", hidden_features=4, options={"omega_0": 3.0}),
              "alone": ModelSpec("relu", hidden_features=3)}
    kept = []
    kw = dict(seeds=(0, 1), epochs=6, progress=False, on_result=lambda n, s, r: kept.append((n, s, r.info)))
    sep = compare(models, sig, **kw)
    kept.clear()
    bat = compare(models, sig, batched="auto", **kw)
    assert [(n, s) for n, s, _ in kept] == [(n, s) for n in models for s in (0, 1)]
    assert {n: i.get("batched_models") for n, s, i in kept} == {"tanh a": 4, "tanh b": 4, "siren": 2, "alone": 2}
    for a, b in zip(sep.runs, bat.runs):
        assert (a["model"], a["seed"]) == (b["model"], b["seed"])
        assert abs(a["metrics"]["mse"] - b["metrics"]["mse"]) < 1e-5  # float32 models: rounding only
    with pytest.raises(ValueError, match="batched must be False, True or 'auto'"):
        compare(models, sig, batched="yes")
    odd = {"odd": lambda seed: MLP(1, 1, 4 + seed)}
    with pytest.raises(ValueError, match=r"seeds of 'odd' do not build one architecture.*out_features is 5 vs 4"):
        compare(odd, sig, seeds=(0, 1), epochs=1, batched=True)
    assert len(compare(odd, sig, seeds=(0, 1), epochs=1, batched="auto", progress=False).runs) == 2
