"""Primitives against exact references: packing, RTN by hand, per-token activation quantization."""

import pytest
import torch

from qlite.classical.quant.primitives import (
    choose_qparams,
    dequantize_weight,
    pack_bits,
    quantize_per_token,
    quantize_weight,
    unpack_bits,
)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_pack_unpack_round_trip(bits, n):
    g = torch.Generator().manual_seed(bits * 1000 + n)
    codes = torch.randint(0, 2**bits, (n,), generator=g, dtype=torch.int64).to(torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8
    # Real bytes: n*b/8 exactly for whole runs of 8 codes, at most one spare byte per bit plane otherwise.
    assert packed.numel() == n * bits // 8 if n % 8 == 0 else packed.numel() <= (n * bits + 7) // 8 + 2
    assert torch.equal(unpack_bits(packed, bits, n), codes)


def test_pack_bit_layout_is_little_endian_within_words():
    # 4-bit codes 1, 2 -> byte 0x21; 2-bit codes 3,0,1,2 -> 0b10_01_00_11.
    assert pack_bits(torch.tensor([1, 2], dtype=torch.uint8), 4).tolist() == [0x21]
    assert pack_bits(torch.tensor([3, 0, 1, 2], dtype=torch.uint8), 2).tolist() == [0b10010011]


def test_pack_rejects_unsupported_width():
    with pytest.raises(ValueError, match="1 to 8 bits"):
        pack_bits(torch.zeros(4, dtype=torch.uint8), 9)


def test_rtn_asymmetric_by_hand():
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    # range [-1, 2] (contains 0), 2 bits: scale = 3/3 = 1, zero = round(1/1) = 1
    codes, scale, zero = quantize_weight(w, 2, symmetric=False, group_size=4)
    assert scale.tolist() == [[1.0]] and zero.tolist() == [[1.0]]
    # round(w/1) + 1 = [0, 1, 1 (0.5 rounds to even 0, +1), 3]
    assert codes.tolist() == [[0, 1, 1, 3]]
    assert dequantize_weight(codes, scale, zero, 4).tolist() == [[-1.0, 0.0, 0.0, 2.0]]


def test_rtn_symmetric_by_hand():
    w = torch.tensor([[0.7, -3.5, 1.4, 0.0]])
    # 4-bit symmetric: scale = 3.5 / 7 = 0.5, values round(w / 0.5) = [1 (1.4 -> 1), -7, 3 (2.8), 0]
    codes, scale, zero = quantize_weight(w, 4, symmetric=True, group_size=4)
    assert scale.item() == 0.5 and zero.item() == 8
    assert (codes.long() - 8).tolist() == [[1, -7, 3, 0]]
    assert dequantize_weight(codes, scale, zero, 4).tolist() == [[0.5, -3.5, 1.5, 0.0]]


def test_groups_and_channels_are_independent():
    w = torch.tensor([[1.0, 2.0, 100.0, 200.0], [0.1, 0.2, 0.3, 0.4]])
    codes, scale, zero = quantize_weight(w, 8, True, group_size=2)
    assert scale.shape == (2, 2)
    torch.testing.assert_close(scale, (w.reshape(2, 2, 2).abs().amax(-1) / 127).half().float())
    deq = dequantize_weight(codes, scale, zero, 2)
    assert (deq - w).abs().max() <= scale.max() / 2 + 1e-6


def test_ragged_last_group_equals_padding_with_zeros():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 20, generator=g)
    codes, scale, zero = quantize_weight(w, 3, False, group_size=8)  # groups 8, 8, 4
    assert codes.shape == (5, 20) and scale.shape == (5, 3)
    padded = torch.nn.functional.pad(w, (0, 4))
    c2, s2, z2 = quantize_weight(padded, 3, False, group_size=8)
    assert torch.equal(codes, c2[:, :20]) and torch.equal(scale, s2) and torch.equal(zero, z2)
    torch.testing.assert_close(dequantize_weight(codes, scale, zero, 8), dequantize_weight(c2, s2, z2, 8)[:, :20])


def test_scales_are_stored_precision():
    s, _ = choose_qparams(torch.tensor([[0.123456789, -1.0]]), 8, True)
    assert s.item() == torch.tensor(1.0 / 127).half().item()


def test_per_token_activation_quantization():
    x = torch.tensor([[1.0, -0.5, 0.25], [100.0, 1.0, 0.0]])
    y = quantize_per_token(x, 8)
    # Each row has its own scale: row 0's small values survive despite row 1's large one.
    assert (y[0] - x[0]).abs().max() <= 1.0 / 127 / 2 + 1e-7
    assert (y[1] - x[1]).abs().max() <= 100.0 / 127 / 2 + 1e-5
    assert y[1, 0] == 100.0


def test_a_step_beyond_float16_is_refused_not_replaced():
    from qlite.classical.quant.primitives import choose_qparams

    w = torch.tensor([[1e7, -1e7, 3.0, 0.5]])
    with pytest.raises(ValueError, match="beyond torch.float16's range"):
        choose_qparams(w, 8, True)
    scale, _ = choose_qparams(w, 8, True, scale_dtype=torch.float32)
    assert scale.item() == pytest.approx(1e7 / 127)
