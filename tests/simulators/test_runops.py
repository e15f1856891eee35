"""Typed run operations: each one's adjoint inverts its apply, its backward gives autograd's
gradients, every consumer refuses what is not a run operation."""

import pytest
import torch

from qlite.simulators import NativeBackend, reuploading_circuit
from qlite.simulators import fused, runops
from qlite.simulators.cost import run_cost
from qlite.simulators.layout import make_layout

N = 4


def _unitary(k, g):
    a = torch.randn(k, k, dtype=torch.complex128, generator=g)
    return torch.linalg.qr(a)[0]


def _orthogonal(k, g):
    return torch.linalg.qr(torch.randn(k, k, dtype=torch.float64, generator=g))[0]


def _cases(g):
    """(operation, tensors, env) for every kind, on 4 qubits."""
    dim = 1 << N
    lay = make_layout(NativeBackend().program(reuploading_circuit(N, 1, 1)), "cpu", torch.float64, None)
    x = torch.randn(3, N, dtype=torch.float64, generator=g)
    env = runops.Env(x, lay.encodings, N, torch.complex128)
    phases = torch.polar(torch.ones(dim, dtype=torch.float64), torch.randn(dim, dtype=torch.float64, generator=g))
    perm = torch.randperm(dim, generator=g)
    sign = phases.clone()
    chunk = torch.stack([_unitary(4, g), _unitary(4, g)])
    blocks = torch.stack([_unitary(4, g) for _ in range(4)])
    offset = torch.randn(N, dtype=torch.float64, generator=g)
    return [
        (runops.Chunk(0, 2, 0, 1), [chunk], env),
        (runops.Chunk(2, 2, 0, 0), [chunk], env),
        (runops.ChunkBlocks(2, 2, 0), [blocks], env),
        (runops.Dense(0), [_unitary(dim, g)], env),
        (runops.Permute(perm, torch.argsort(perm), sign), [], env),
        (runops.Diagonal(0), [phases], env),
        (runops.Encode(0, sign), [], env),
        (runops.Encode(0, None, offset=0), [offset], env),
        (runops.RealChunk(0, 2, 0, 1), [torch.stack([_orthogonal(4, g), _orthogonal(4, g)])], env),
        (runops.RealChunk(1, 3, 0, 0), [_orthogonal(8, g)[None]], env),
        (runops.RealChunkBlocks(2, 2, 0), [torch.stack([_orthogonal(4, g) for _ in range(4)])], env),
    ]


@pytest.mark.parametrize("case", range(11))
def test_each_operation_inverts_and_differentiates_itself(case):
    g = torch.Generator().manual_seed(case)
    op, tensors, env = _cases(g)[case]
    dim = 1 << N
    psi = torch.randn(dim, 3, dtype=torch.complex128, generator=g)
    out = op.apply(psi, tensors, env)
    assert (op.adjoint(out, tensors, env) - psi).abs().max() < 1e-12
    # autograd through apply against the operation's own backward, for a real loss
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    xx = env.x.detach().clone().requires_grad_()
    env2 = runops.Env(xx, env.encodings, env.n, env.cdtype)
    p = psi.clone().requires_grad_()
    w = torch.randn(dim, 3, dtype=torch.complex128, generator=g)
    res = op.apply(p, leaves, env2)
    loss = (res.conj() * w).real.sum() + res.abs().pow(2).mul(torch.arange(dim, dtype=torch.float64)[:, None]).sum()
    auto = torch.autograd.grad(loss, [p, xx, *leaves], allow_unused=True)
    phi = (w / 2 + res.detach() * torch.arange(dim, dtype=torch.float64)[:, None])  # dL/d conj(res)
    grads = runops.Grads([None] * len(tensors), [True] * len(tensors), torch.zeros_like(env.x))
    psi_in, phi_in = op.backward(out, phi, tensors, env, grads)
    assert (psi_in - psi).abs().max() < 1e-12
    assert (2 * phi_in - auto[0]).abs().max() < 1e-10
    want_x = torch.zeros_like(env.x) if auto[1] is None else auto[1]
    assert (grads.x - want_x).abs().max() < 1e-10
    for got, want in zip(grads.tensors, auto[2:]):
        assert (got - want).abs().max() < 1e-10
    f, b = op.cost(N, 3, 16)
    assert f.flops > 0 and b.flops > f.flops and b.bytes > f.bytes


class _Unknown:
    kind = "chunk"


def test_consumers_refuse_what_is_not_a_run_operation():
    c = reuploading_circuit(8, 1, 1)
    backend = NativeBackend(strategy="factored")
    plan = backend.plan(c)
    with pytest.raises(TypeError, match="not a run operation"):
        run_cost([*plan, ("chunk", 0, 4, 0, 0)], 8, 16, 8)
    with pytest.raises(TypeError, match="not a run operation"):
        run_cost([_Unknown()], 8, 16, 8)
    run = backend._prepare(c, torch.zeros(c.n_weights), torch.zeros(2, 8), strategy="factored")[0]
    with pytest.raises(TypeError, match="not a run operation"):
        fused.plan(run.c, [*run.ops, ("mono", (None, None, None))], 8, "cpu")

    class NewKind(runops.RunOp):  # a run operation the fused planner was not taught
        def apply(self, state, tensors, env=None):
            return state

        adjoint = apply

        def backward(self, psi, phi, tensors, env, grads, psi_in=None):
            return psi, phi

        def cost(self, n_qubits, batch, item_bytes):
            return run_cost([], n_qubits, batch, 0)

    with pytest.raises(TypeError, match="does not know the run operation NewKind"):
        fused.plan(run.c, [*run.ops, NewKind()], 8, "cpu")


def test_cost_counts_follow_the_operations():
    """The factored plan of a QIREN layer costs less than its dense plan at 8 qubits, and each
    operation's count adds up to the plan's."""
    c = reuploading_circuit(8, 2, 2)
    dense = run_cost(NativeBackend(strategy="dense").plan(c, batch=64), 8, 64, 8)[0]
    fact_ops = NativeBackend(strategy="factored").plan(c, batch=64)
    fact = run_cost(fact_ops, 8, 64, 8)[0]
    assert fact.flops < dense.flops
    total = sum(op.cost(8, 64, 8)[0].flops for op in fact_ops)
    assert fact.flops == pytest.approx(total + 3.0 * 256 * 64 + 2.0 * 256 * 64 * 8)
