"""Distillation losses against closed forms, and a short recovery run."""

import copy
import math

import pytest
import torch

from qlite.classical.distillation import distill, kd_loss


def test_kl_losses_match_closed_forms():
    teacher = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    student = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    fkl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    rkl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(kd_loss(student, teacher, kind="forward")) == pytest.approx(fkl, rel=1e-6)
    assert float(kd_loss(student, teacher, kind="reverse")) == pytest.approx(rkl, rel=1e-6)
    assert float(kd_loss(student, teacher, kind="mixed", alpha=0.3)) == pytest.approx(0.3 * fkl + 0.7 * rkl, rel=1e-6)
    # Temperature 2: p = softmax((0, ln 3) / 2) = (1, sqrt 3) / (1 + sqrt 3), q uniform; times 4.
    r3 = math.sqrt(3.0)
    p = (1 / (1 + r3), r3 / (1 + r3))
    fkl2 = sum(pi * math.log(pi / 0.5) for pi in p)
    assert float(kd_loss(student, teacher, kind="forward", temperature=2.0)) == pytest.approx(4 * fkl2, rel=1e-6)
    assert float(kd_loss(teacher, teacher, kind="reverse")) == pytest.approx(0.0, abs=1e-7)


def test_reverse_kl_gradient_matches_its_closed_form():
    # d KL(q||p) / d z_s = q * (log q - log p - KL(q||p)) for a softmax student.
    g = torch.Generator().manual_seed(0)
    zs = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_(True)
    zt = torch.randn(5, generator=g, dtype=torch.float64)
    loss = kd_loss(zs[None], zt[None], kind="reverse")
    loss.backward()
    q, lq, lp = torch.softmax(zs, 0).detach(), torch.log_softmax(zs, 0).detach(), torch.log_softmax(zt, 0)
    kl = (q * (lq - lp)).sum()
    torch.testing.assert_close(zs.grad.double(), (q * (lq - lp - kl)).double(), rtol=1e-5, atol=1e-6)


def test_masked_positions_and_bad_input():
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
    full = kd_loss(s, t, kind="forward", mask=torch.ones(2, 3))
    assert float(full) == pytest.approx(float(kd_loss(s, t)), rel=1e-6)
    per = kd_loss(s[mask.bool()], t[mask.bool()])
    assert float(kd_loss(s, t, mask=mask)) == pytest.approx(float(per), rel=1e-6)
    with pytest.raises(ValueError, match="kind must be"):
        kd_loss(s, t, kind="js")
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(s, t[..., :5])


def test_distilling_an_mqa_student_lowers_its_divergence_and_trains_only_kv(tiny_llm):
    from qlite.classical.gqa import convert_gqa

    teacher, calib = tiny_llm
    student = convert_gqa(teacher, 1)
    snapshot = copy.deepcopy(student.state_dict())

    def div(m):
        with torch.no_grad():
            return sum(float(kd_loss(m(x).logits, teacher(x).logits, kind="reverse")) for x in calib)

    d0 = div(student)
    teacher.train()  # the caller's teacher must leave in the mode it came in
    out, hist = distill(student, teacher, calib, loss="reverse", steps=15, lr=3e-3, trainable=("*.k_proj.*", "*.v_proj.*"))
    assert teacher.training
    teacher.eval()
    assert div(out) < 0.7 * d0 and len(hist) == 15
    assert all(torch.equal(snapshot[k], v) for k, v in student.state_dict().items())  # not inplace
    changed = {k for k, v in out.state_dict().items() if not torch.equal(snapshot[k], v)}
    assert changed and all(".k_proj." in k or ".v_proj." in k for k in changed)
    with pytest.raises(ValueError, match="needs a teacher"):
        from qlite.classical.distillation import train_student

        train_student(student, calib, loss="forward")
    with pytest.raises(ValueError, match="no parameter name matches"):
        distill(student, teacher, calib, trainable=("nothing",))


def test_training_takes_a_generator_and_leaves_the_global_rng_alone():
    """Dropout in the student draws from a seeded fork of the RNG: the same generator gives the same
    run, and the caller's random state is what it was (before the fix: torch.manual_seed(seed))."""
    from torch import nn

    from qlite.classical.distillation import train_student

    def run(generator):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Embedding(8, 8), nn.Dropout(0.5), nn.Linear(8, 8))
        batches = [torch.randint(0, 8, (1, 6), generator=torch.Generator().manual_seed(1))]
        torch.manual_seed(99)
        expected = torch.rand(2)
        torch.manual_seed(99)
        hist = train_student(net, batches, loss="lm", steps=4, lr=1e-2, generator=generator)
        assert torch.equal(torch.rand(2), expected)
        return hist

    a, b = run(torch.Generator().manual_seed(3)), run(torch.Generator().manual_seed(3))
    assert a == b and run(None) == run(None) and run(torch.Generator().manual_seed(4)) != a
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        run(3)
