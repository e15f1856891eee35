"""SqueezeLLM (Kim et al., ICML 2024, arXiv:2306.07629): sensitivity-weighted non-uniform quantization
with a dense-and-sparse split.

* Sensitivity (Sec. 3.1): the diagonal Fisher information ``F = sum_samples g^2`` of the calibration loss
  (squared gradients of the next-token cross-entropy), one value per weight.
* Non-uniform codebook (Sec. 3.1, Eq. 4): per output channel (row) ``2**bits`` centroids found by k-means
  on the row's weights, each weight counted with its Fisher value:
  ``min_c sum_i F_i (w_i - c_{a(i)})^2``. The codes index a lookup table (LUT) of the row.
* Dense-and-sparse (Sec. 3.2): a small fraction of weights is kept in a sparse full-precision matrix:
  the largest magnitudes (outliers, 90% of the budget here; the paper's 0.45% of 0.5%) and the largest
  sensitivities (the remaining 10%). They are left out of the k-means (weight 0) and written back over
  the LUT values.

Pure primitives (:func:`weighted_kmeans`, :func:`dense_sparse_split`, :func:`squeezellm_quantize`) are
apart from the module (:class:`LUTQuantizedLinear`) and the transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .primitives import pack_bits, unpack_bits


def weighted_kmeans(w: torch.Tensor, weight: torch.Tensor, k: int, *, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise 1-D k-means with per-value weights (Lloyd's algorithm), vectorised over rows.

    Args:
        w: ``(rows, n)`` values; weight: ``(rows, n)`` non-negative weights (0: the value is ignored).
        k: centroids per row.
    Returns:
        ``centroids`` ``(rows, k)`` float32 (sorted) and ``assign`` ``(rows, n)`` long: the index of the
        nearest centroid of every value (also of the weight-0 ones).
    Initialisation: the ``(j + 0.5) / k`` quantiles of each row (deterministic). A centroid that loses
    every weighted value keeps its position.
    """
    w, weight = w.float(), weight.float()
    rows, n = w.shape
    srt = torch.sort(w, dim=1).values
    pos = ((torch.arange(k, dtype=torch.float32) + 0.5) / k * n).long().clamp(max=n - 1)
    c = srt[:, pos.to(w.device)]  # (rows, k)
    assign = None
    for _ in range(iters):
        new = (w[:, :, None] - c[:, None, :]).abs().argmin(dim=2)  # (rows, n)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        num = torch.zeros(rows, k, device=w.device).scatter_add_(1, assign, weight * w)
        den = torch.zeros(rows, k, device=w.device).scatter_add_(1, assign, weight)
        c = torch.where(den > 0, num / den.clamp(min=1e-30), c)
    c, order = torch.sort(c, dim=1)
    assign = torch.argsort(order, dim=1).gather(1, assign)  # old centroid index -> sorted index
    return c, assign


def dense_sparse_split(w: torch.Tensor, sensitivity: torch.Tensor, fraction: float,
                       sensitive_share: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``w`` ``(out, in)`` into ``dense + sparse``: the ``fraction`` of entries kept sparse are the
    largest ``|w|`` (``1 - sensitive_share`` of them) and then the largest ``sensitivity`` among the rest.

    Returns:
        ``dense`` (``w`` with the sparse entries set to 0), ``idx`` (flat indices, sorted, long) and
        ``values`` (``w.flatten()[idx]``), so that ``dense.flatten().index_put((idx,), values) == w``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"outlier fraction must be in [0, 1), got {fraction!r}")
    flat = w.reshape(-1)
    n_total = int(round(fraction * flat.numel()))
    n_mag = int(round(n_total * (1 - sensitive_share)))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=w.device)
    if n_mag:
        keep[flat.abs().topk(n_mag).indices] = True
    if n_total - n_mag:
        s = sensitivity.reshape(-1).float().masked_fill(keep, -1.0)
        keep[s.topk(n_total - n_mag).indices] = True
    idx = torch.nonzero(keep).flatten()
    dense = flat.masked_fill(keep, 0.0).reshape(w.shape)
    return dense, idx, flat[idx].clone()


def squeezellm_quantize(w: torch.Tensor, fisher: torch.Tensor, bits: int, outlier_fraction: float, *,
                        iters: int = 50) -> dict:
    """SqueezeLLM of one ``(out, in)`` weight with its Fisher diagonal ``fisher`` (same shape).

    Returns:
        dict with ``codes`` ``(out, in)`` uint8, ``codebook`` ``(out, 2**bits)`` float32, ``sparse_idx`` /
        ``sparse_values`` (flat indices and values of the full-precision part) and ``dequantized``
        ``(out, in)``: ``codebook[row, code]`` with the sparse entries written back.
    """
    k = 2**bits
    if k > w.shape[1]:
        raise ValueError(f"{bits}-bit codebooks need {k} centroids per row but rows have only {w.shape[1]} "
                         f"weights; use bits <= {max(1, w.shape[1].bit_length() - 1)}")
    dense, idx, vals = dense_sparse_split(w.float(), fisher, outlier_fraction)
    weight = fisher.float().clone().reshape(-1)
    weight[idx] = 0.0  # the sparse entries take no part in the codebook
    weight = weight.reshape(w.shape)
    # A row whose Fisher values are all 0 (an unused output) falls back to plain k-means.
    dead = weight.sum(dim=1, keepdim=True) <= 0
    weight = torch.where(dead, torch.ones_like(weight), weight)
    cb, assign = weighted_kmeans(dense, weight, k, iters=iters)
    cb = cb.to(torch.float16).float()  # the stored LUT precision
    deq = cb.gather(1, assign).reshape(-1)
    deq[idx] = vals.to(torch.float16).float()
    return {"codes": assign.to(torch.uint8), "codebook": cb, "sparse_idx": idx, "sparse_values": vals,
            "dequantized": deq.reshape(w.shape)}


class LUTQuantizedLinear(nn.Module):
    """``y = x @ W^T + b`` with ``W[r, i] = codebook[r, code[r, i]]``, then the sparse full-precision
    entries written over it. Stores packed codes, a float16 codebook per row, int32 flat indices and
    float16 values of the sparse part: every byte is in the state dict. The lookup runs in every forward
    (``kernel == "simulated"``: no LUT kernel on the CPU)."""

    kernel = "simulated"

    def __init__(self, codes, codebook, sparse_idx, sparse_values, *, bits: int, bias=None, method: str = ""):
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.bits, self.method = bits, method
        self.register_buffer("packed", pack_bits(codes, bits))
        self.register_buffer("codebook", codebook.to(torch.float16))
        self.register_buffer("sparse_idx", sparse_idx.to(torch.int32))
        self.register_buffer("sparse_values", sparse_values.to(torch.float16))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def use_kernel(self) -> str:
        return "non-uniform (lookup-table) codes have no CPU kernel"

    def codes(self) -> torch.Tensor:
        return unpack_bits(self.packed, self.bits, self.in_features * self.out_features).reshape(
            self.out_features, self.in_features)

    def dequantized_weight(self) -> torch.Tensor:
        w = self.codebook.float().gather(1, self.codes().long()).reshape(-1)
        w = w.index_copy(0, self.sparse_idx.long(), self.sparse_values.float())
        return w.reshape(self.out_features, self.in_features)

    effective_weight = dequantized_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight().to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, bits={self.bits}, "
                f"sparse={self.sparse_idx.numel()}, method={self.method!r}")


def fisher_diagonal(model: nn.Module, calib: list, names: list[str]) -> dict[str, torch.Tensor]:
    """``sum_items (d loss / d W)^2`` for the weight of each named linear layer, the loss being the
    next-token cross-entropy of a causal LM on a ``(batch, T)`` token-id item. The model is left as it
    was (gradients cleared, ``requires_grad`` restored)."""
    from ..calibration import call_model, output_logits
    from ..layers import linear_weight

    for i, x in enumerate(calib):
        if not isinstance(x, torch.Tensor) or x.dtype not in (torch.long, torch.int, torch.int32) or x.dim() != 2 or x.shape[1] < 2:
            raise ValueError(f"SqueezeLLM needs (batch, T >= 2) token-id tensors as calibration items (its Fisher "
                             f"information is the gradient of the next-token loss); calib[{i}] is "
                             f"{getattr(x, 'shape', type(x).__name__)} of {getattr(x, 'dtype', '')}")
    params = {n: linear_weight(model.get_submodule(n)) for n in names}
    flags = {p: p.requires_grad for p in model.parameters()}
    dev = next(iter(params.values())).device
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            for x in calib:
                x = x.to(dev)
                logits = output_logits(call_model(model, x)).float()
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
                if not torch.isfinite(loss):
                    raise ValueError(f"SqueezeLLM: non-finite calibration loss ({float(loss.detach())}); check the model's "
                                     "weights and the calibration tokens")
                grads = torch.autograd.grad(loss, list(params.values()))
                for n, g in zip(params, grads):
                    fisher[n] += g.float() ** 2
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
    return fisher


def _register():
    from ..layers import linear_weight
    from ..transform import LayerRecord, LinearTransform, state_bytes, transform_for
    from .configs import SqueezeLLM

    @transform_for(SqueezeLLM)
    class _SqueezeLLM(LinearTransform):
        def layer_check(self, name, weight):
            super().layer_check(name, weight)
            if 2**self.config.bits > weight.shape[1]:
                raise ValueError(f"SqueezeLLM: layer {name!r} has {weight.shape[1]} inputs, fewer than the "
                                 f"{2**self.config.bits} centroids of a {self.config.bits}-bit row codebook; "
                                 f"lower bits or leave the layer out with skip=({name!r},)")

        def convert(self, name, module, group, observer, ctx):  # pragma: no cover - run() does the work
            raise NotImplementedError

        def run(self, model, calib, ctx):
            c = self.config
            targets = self.targets(model)
            fisher = fisher_diagonal(model, calib, list(targets))
            records = []
            for name, mod in targets.items():
                w = linear_weight(mod).detach().float()
                r = squeezellm_quantize(w, fisher[name].to(w.device), c.bits, c.outlier_fraction, iters=c.kmeans_iters)
                new = LUTQuantizedLinear(r["codes"], r["codebook"], r["sparse_idx"], r["sparse_values"], bits=c.bits,
                                         bias=mod.bias, method=c.name).to(w.device)
                before = state_bytes(mod)
                d = new.dequantized_weight() - w
                f = fisher[name].to(w.device)
                extra = {"sparse_entries": int(r["sparse_idx"].numel()),
                         "fisher_weighted_rel_error": float((f * d * d).sum() / (f * w * w).sum().clamp(min=1e-30))}
                model.set_submodule(name, new)
                records.append(LayerRecord(name, c.name, tuple(w.shape), before, state_bytes(new),
                                           float(d.norm() / w.norm().clamp(min=1e-30)), None, extra))
            return records


_register()
