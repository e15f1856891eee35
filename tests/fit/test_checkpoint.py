"""Checkpoints: safetensors + JSON, atomic writes, exact resume on CPU, refusals that lose nothing."""

import json
import os

import pytest
import torch

from qlite import data
from qlite.training import FitConfig, fit, load_checkpoint, read_index
from qlite.training import checkpoint as ckpt_io
from qlite.models import MLP, ModelSpec

pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def signal():
    return data.image("camera", size=12)


def _params(model):
    return [t.detach().clone() for t in model.state_dict().values()]


class Crash(RuntimeError):
    pass


def _crash_after(model, calls):
    """Make the model raise on its ``calls + 1``-th training forward (a process killed mid-run)."""
    count = [0]

    def hook(module, args):
        if module.training:
            count[0] += 1
            if count[0] > calls:
                raise Crash(f"killed after {calls} training steps")

    return model.register_forward_pre_hook(hook)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run_exactly(tmp_path, signal):
    # mini-batches (shuffling RNG), cosine schedule, BatchNorm, Adam moments: every piece of state matters
    spec = ModelSpec("relu", hidden_features=8)
    cfg = FitConfig(epochs=12, lr=0.01, batch_size=40, schedule="cosine", checkpoint_every=5)
    whole = fit(spec.build(2, 1, seed=0), signal, cfg)
    victim = spec.build(2, 1, seed=0)
    _crash_after(victim, 7 * 3 + 1)  # 3 batches per epoch: dies inside epoch 8
    with pytest.raises(Crash):
        fit(victim, signal, cfg, checkpoint_dir=tmp_path)
    assert read_index(tmp_path)["epoch"] == 5
    fresh = spec.build(2, 1, seed=99)  # different initial weights: everything must come from the checkpoint
    resumed = fit(fresh, signal, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history["loss"] == whole.history["loss"]
    assert resumed.history["lr"] == whole.history["lr"]
    for a, b in zip(_params(whole.model), _params(resumed.model)):
        assert torch.equal(a, b)
    assert resumed.metrics == whole.metrics
    assert read_index(tmp_path)["epoch"] == 12


def test_continuing_a_finished_run_equals_one_longer_run(tmp_path, signal):
    spec = ModelSpec("qiren", hidden_features=3)
    whole = fit(spec.build(2, 1, seed=0), signal, epochs=8, lr=0.03)
    first = fit(spec.build(2, 1, seed=0), signal, epochs=4, lr=0.03, checkpoint_dir=tmp_path)
    resumed = fit(spec.build(2, 1, seed=5), signal, checkpoint_dir=tmp_path, resume=True, epochs=8)
    assert resumed.history["loss"] == whole.history["loss"]
    for a, b in zip(_params(whole.model), _params(resumed.model)):
        assert torch.equal(a, b)
    assert resumed.seconds >= first.seconds


def test_checkpoint_contents_and_round_trip(tmp_path, signal):
    model = ModelSpec("rff", hidden_features=8).build(2, 1, seed=0)
    fit(model, signal, epochs=3, checkpoint_dir=tmp_path, info={"note": "hello"})
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert info["format"] == "qlite-checkpoint" and info["epoch"] == 3 and info["info"] == {"note": "hello"}
    assert info["model_class"] == "RFFNet" and info["config"]["epochs"] == 3
    weights = list(tmp_path.glob("*.safetensors"))
    assert [w.name for w in weights] == [info["weights"]]
    assert not list(tmp_path.glob("*.tmp"))
    ck = load_checkpoint(tmp_path)
    for k, v in model.state_dict().items():  # includes the fixed Fourier frequencies and BN statistics
        assert torch.equal(ck.model_state[k], v)
    assert {"torch", "shuffle"} <= set(ck.rng)
    assert ck.optimizer_state["param_groups"][0]["lr"] == pytest.approx(0.03)
    assert all("exp_avg" in s for s in ck.optimizer_state["state"].values())


def test_existing_checkpoint_is_not_overwritten(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=2, checkpoint_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        fit(MLP(2, 1, 4), signal, epochs=2, checkpoint_dir=tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_resume_refuses_another_model_other_data_and_fewer_epochs(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=4, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="does not belong to this model.*written by a MLP, this model is a SIREN"):
        fit(ModelSpec("siren", hidden_features=4).build(2, 1), signal, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="shapes differ"):
        fit(MLP(2, 1, 5), signal, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="layers differ in their settings"):  # same tensors, another activation
        fit(MLP(2, 1, 4, activation="tanh"), signal, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="different data"):
        fit(MLP(2, 1, 4), data.image("astronaut", size=12), checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="already at epoch 4"):
        fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path, resume=True, epochs=3)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path / "nothing", resume=True)
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        fit(MLP(2, 1, 4), signal, resume=True)


def test_info_that_json_cannot_hold_is_refused_before_training(tmp_path, signal):
    with pytest.raises(TypeError, match="info must be JSON-serialisable"):
        fit(MLP(2, 1, 4), signal, epochs=2, checkpoint_dir=tmp_path / "run", info={"src": tmp_path})
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_corrupt_weights_are_detected(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=1, checkpoint_dir=tmp_path)
    w = tmp_path / read_index(tmp_path)["weights"]
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        read_index(tmp_path)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, signal, monkeypatch):
    model = MLP(2, 1, 4)
    fit(model, signal, epochs=2, checkpoint_dir=tmp_path)
    good = load_checkpoint(tmp_path)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("checkpoint.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        fit(model, signal, epochs=5, checkpoint_dir=tmp_path, resume=True)
    monkeypatch.undo()
    again = load_checkpoint(tmp_path)  # the old index and its weights are intact
    assert again.info["epoch"] == 2
    assert all(torch.equal(again.model_state[k], good.model_state[k]) for k in good.model_state)
    assert not list(tmp_path.glob("*.tmp"))


def test_periodic_checkpoints(tmp_path, signal):
    seen = []
    real = ckpt_io.save_checkpoint

    def spy(directory, **kw):
        seen.append(kw["epoch"])
        return real(directory, **kw)

    import qlite.training.loop as loop

    orig = loop.ckpt_io.save_checkpoint
    loop.ckpt_io.save_checkpoint = spy
    try:
        fit(MLP(2, 1, 4), signal, epochs=7, checkpoint_every=3, checkpoint_dir=tmp_path)
    finally:
        loop.ckpt_io.save_checkpoint = orig
    assert seen == [3, 6, 7]
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_other_files_in_the_directory_are_left_alone(tmp_path, signal):
    mine = tmp_path / "weights-000001-0.safetensors"
    mine.write_bytes(b"the user's own file")
    (tmp_path / "notes.txt").write_text("keep me")
    fit(MLP(2, 1, 4), signal, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=1)
    fit(MLP(2, 1, 4), signal, epochs=3, checkpoint_dir=tmp_path, resume=True, checkpoint_every=1)
    assert mine.read_bytes() == b"the user's own file" and (tmp_path / "notes.txt").read_text() == "keep me"
    assert read_index(tmp_path)["weights"] != mine.name


def test_an_edited_index_is_refused(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=2, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.json"
    good = path.read_text()
    for key, value in (("epoch", 1), ("config", {**json.loads(good)["config"], "lr": 0.5})):
        edited = json.loads(good)
        edited[key] = value
        path.write_text(json.dumps(edited))
        with pytest.raises(ValueError, match="does not match its index_sha256: it was edited"):
            fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path, resume=True, epochs=4)
    no_hash = json.loads(good)
    del no_hash["index_sha256"]
    path.write_text(json.dumps(no_hash))
    with pytest.raises(ValueError, match="no integrity hash"):
        read_index(tmp_path)
    no_sha = json.loads(good)
    del no_sha["sha256"]
    no_sha["index_sha256"] = ckpt_io._index_hash(no_sha)
    path.write_text(json.dumps(no_sha))
    with pytest.raises(ValueError, match="lacks the 'sha256' field"):
        load_checkpoint(tmp_path)
    path.write_text(good)
    assert load_checkpoint(tmp_path).info["epoch"] == 2


def test_files_left_by_an_interrupted_save_are_cleaned_on_the_next_save(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=2, checkpoint_dir=tmp_path)
    current = tmp_path / read_index(tmp_path)["weights"]
    orphan = tmp_path / "weights-000003-0.safetensors"  # written, but killed before its index was renamed
    orphan.write_bytes(current.read_bytes())
    partial = tmp_path / ".weights-000003-1.safetensors.x1y2.tmp"  # killed while writing
    partial.write_bytes(b"half a file")
    index_tmp = tmp_path / ".checkpoint.json.abc.tmp"
    index_tmp.write_text("{")
    users = tmp_path / "weights-000009-0.safetensors"
    users.write_bytes(b"not ours: no qlite header")
    fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path, resume=True, epochs=3)
    assert not orphan.exists() and not partial.exists() and not index_tmp.exists()
    assert users.read_bytes() == b"not ours: no qlite header"
    assert sorted(p.name for p in tmp_path.glob("weights-*")) == sorted([read_index(tmp_path)["weights"], users.name])


def test_a_cosine_schedule_is_not_stretched_on_resume(tmp_path, signal):
    fit(MLP(2, 1, 4), signal, epochs=4, schedule="cosine", lr=0.01, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="cosine learning-rate schedule of this run was planned over 4 epochs"):
        fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path, resume=True, epochs=8)
    with pytest.raises(ValueError, match="cannot continue with schedule='constant'"):
        fit(MLP(2, 1, 4), signal, checkpoint_dir=tmp_path, resume=True, epochs=8, schedule="constant")


def test_checkpoints_by_wall_time(tmp_path, signal):
    seen = []
    real = ckpt_io.save_checkpoint

    def spy(directory, **kw):
        seen.append(kw["epoch"])
        return real(directory, **kw)

    import qlite.training.loop as loop

    loop.ckpt_io.save_checkpoint = spy
    try:
        fit(MLP(2, 1, 4), signal, epochs=4, checkpoint_seconds=1e-9, checkpoint_dir=tmp_path)
    finally:
        loop.ckpt_io.save_checkpoint = real
    assert seen == [1, 2, 3, 4]  # every epoch took longer than 1e-9 s


def test_a_mismatched_checkpoint_names_the_differing_setting(tmp_path, signal):
    fit(MLP(2, 1, 4, activation="relu"), signal, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError) as err:
        fit(MLP(2, 1, 4, activation="tanh"), signal, checkpoint_dir=tmp_path, resume=True, epochs=2)
    msg = str(err.value)
    assert "activation='relu'" in msg and "activation='tanh'" in msg
    assert "Sequential" not in msg and "BatchNorm1d" not in msg  # the differing lines, not the whole model
