"""Resident memory matches the bytes (issue 14, item 2)."""

import torch
from torch import nn

from qlite.classical import RTN, compress, evaluate, state_bytes
from qlite.classical.memory import release_freed_memory, resident_delta, rss_bytes, tensor_bytes


def test_resident_delta_sees_an_allocation_and_its_release():
    t, d = resident_delta(lambda: torch.ones(16 * 2**20))  # 64 MiB, touched
    assert 0.9 * t.nbytes < d < 1.1 * t.nbytes + 2**20
    before = rss_bytes()
    del t
    release_freed_memory()
    assert before - rss_bytes() > 0.9 * 64 * 2**20


def test_tensor_bytes_counts_non_persistent_buffers_and_shared_storage_once():
    m = nn.Linear(100, 10)  # 4,040 bytes
    m.register_buffer("cache", torch.zeros(1000), persistent=False)
    m.alias = m.weight  # the same storage again
    assert state_bytes(m) == 4040 and tensor_bytes(m) == 4040 + 4000


def _net(width=2048, depth=6):
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(depth)])
    with torch.no_grad():
        for lin in net:
            lin.weight.copy_(torch.randn(width, width, generator=g) * 0.02)
    return net


def _warm_up():
    # The first quantization, kernel and matmul calls of a process load code and tables (~9 MB of RSS here): once.
    for recipe in (RTN(4, group_size=32), RTN(8)):
        for kernels in (True, False):
            compress(nn.Sequential(nn.Linear(64, 32)), recipe, kernels=kernels).model(torch.randn(2, 64))


def test_compressed_model_resident_size_matches_its_bytes_and_calls_keep_no_copy():
    net = _net()  # 100.7 MB in float32
    _warm_up()
    for recipe, kernels in ((RTN(4, group_size=128), True), (RTN(8), True), (RTN(4, group_size=128), False)):
        model, resident = resident_delta(lambda: compress(net, recipe, kernels=kernels).model)
        size = state_bytes(model)
        assert abs(resident - size) <= 0.1 * size + 2**20, (recipe, kernels, resident, size)
        assert tensor_bytes(model) <= 1.1 * size  # nothing hidden beside the state
        x = torch.randn(4, 2048)
        held_before = tensor_bytes(model)
        # the first forward dequantizes (simulated) or not (kernel); no copy may stay behind
        _, grown = resident_delta(lambda: model(x).sum().item())
        assert tensor_bytes(model) == held_before and grown < 0.1 * size + 2**20, (grown, size)
        del model


def test_evaluate_reports_resident_beside_bytes():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(16, 8), nn.Linear(8, 16)

        def forward(self, x):
            return self.head(self.emb(x))

    model, resident = resident_delta(LM)
    r = evaluate(model, torch.arange(64) % 16, seqlen=16, latency=False, resident_bytes=resident)
    assert r.resident_bytes == resident and r.tensor_bytes == r.bytes
    assert r.to_dict()["resident_bytes"] == resident


def test_tensor_bytes_counts_torchao_wrapper_tensors():
    pytest = __import__("pytest")
    pytest.importorskip("torchao")
    from qlite.classical import export_torchao, torchao_configs

    m = export_torchao(compress(nn.Sequential(nn.Linear(256, 128)), RTN(8)).model, torchao_configs()["int8_weight_only"])
    assert 256 * 128 <= tensor_bytes(m) <= 1.1 * state_bytes(m) + 1024
