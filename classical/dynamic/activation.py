"""Activation sparsity of MLPs (issue 17, item 1): top-K (Q-Sparse), calibrated magnitude thresholds
(TEAL) and a low-rank neuron predictor (Deja Vu / PowerInfer), with a decode path that reads only the
weights of the neurons it computes.

For a gated MLP ``y = W_down (act(W_gate x) * (W_up x))`` with intermediate width ``I``, a token keeps a set
``S`` of ``K`` neurons and computes ``y = W_down[:, S] h_S``. The weights are stored row-wise per neuron
(``gate_weight``, ``up_weight`` and ``down_t = W_down^T``, each ``(I, hidden)`` and contiguous), so the
rows of ``S`` are what a decode step reads:

* ``topk`` / ``threshold``: ``h`` needs the whole gate / up (the mask depends on it); only the ``K`` rows
  of ``down_t`` are read: bytes per token ``(2 + K / I) / 3`` of the dense MLP's;
* ``predictor``: ``S`` comes from ``(x A) B`` before the MLP runs, so only ``K`` rows of each of the three
  matrices are read: ``K / I`` of the dense bytes, plus the predictor's ``rank * (hidden + I)``.

The decode path (one token) gathers the kept gate / up rows with one ``index_select`` (a neuron's gate and up
rows are stored side by side) and sums the kept rows of ``down_t`` with ``embedding_bag``, which reads them in
place; prompts (several tokens) compute densely and multiply by the mask (same result, no saving).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import find_blocks, skipped
from ..layers import is_linear

log = logging.getLogger(__name__)


def kept_count(width: int, sparsity: float) -> int:
    """``K = round((1 - sparsity) * width)``, at least 1."""
    return max(1, int(round((1.0 - sparsity) * width)))


def topk_mask(h: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest ``|h|`` along the last dimension (exactly ``k`` per row; ties
    broken by ``torch.topk``). ``h``: ``(..., width)``."""
    width = h.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= width:
        raise ValueError(f"topk_mask: k={k!r} must be an integer in [1, {width}] (the width of the activations); "
                         f"give a smaller k, or a sparsity in [0, 1)")
    idx = h.abs().topk(k, dim=-1).indices
    return torch.zeros_like(h, dtype=torch.bool).scatter_(-1, idx, True)


def threshold_for(values: torch.Tensor, sparsity: float) -> float:
    """The magnitude below which a fraction ``sparsity`` of ``|values|`` lies (the lower ``sparsity``
    quantile, as an order statistic)."""
    v = values.reshape(-1).abs().float()
    k = int(round(sparsity * v.numel()))
    if k == 0:
        return -1.0  # nothing switched off: every |h| >= 0 > -1
    return float(v.kthvalue(k).values)


def mlp_modules(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[str, nn.Module]]:
    """``(name, mlp)`` of every MLP in the model's blocks: a module with linear ``up_proj`` and
    ``down_proj`` (and optionally ``gate_proj``) and an ``act_fn`` (Llama, Mistral, Qwen, SmolLM...)."""
    blocks = find_blocks(model)
    out = []
    for i, block in enumerate(blocks.blocks):
        prefix = blocks.name(i)
        for n, m in block.named_modules():
            full = f"{prefix}.{n}" if prefix and n else (prefix or n)
            if (is_linear(getattr(m, "up_proj", None)) and is_linear(getattr(m, "down_proj", None))
                    and callable(getattr(m, "act_fn", None)) and not skipped(full, skip)):
                out.append((full, m))
    return out


def require_mlps(model: nn.Module, skip, method: str) -> list[tuple[str, nn.Module]]:
    found = mlp_modules(model, skip)
    if not found:
        raise ValueError(f"{method}: found no MLP with up_proj / down_proj linear layers and an act_fn in the model's "
                         f"blocks (outside skip={skip!r}); activation sparsity needs Llama-style MLPs")
    for name, m in found:
        for p in ("gate_proj", "up_proj", "down_proj"):
            lin = getattr(m, p, None)
            if lin is not None and not isinstance(lin, nn.Linear):
                raise ValueError(f"{method}: {name}.{p} is a {type(lin).__name__}, not a plain nn.Linear; apply "
                                 "activation sparsity before quantization / factorisation, or skip the layer")
    return found


class SparseMLP(nn.Module):
    """An MLP that passes only ``k`` intermediate neurons per token to its down projection.

    Args:
        mlp: a Llama-style MLP (``gate_proj`` optional, ``up_proj``, ``down_proj``, ``act_fn``).
        mode: ``"topk"``, ``"threshold"`` or ``"predictor"``.
        k: neurons kept per token (``topk`` and ``predictor``).
        threshold: magnitude threshold (``threshold``): neurons with ``|h| > threshold`` are kept.
        predictor: ``(A, B)`` with shapes ``(hidden, rank)``, ``(rank, width)`` (``predictor``).
        candidates: ``predictor`` only: the top ``candidates >= k`` scores are computed and the ``k``
            largest ``|h|`` among them kept (two stages); ``None``: ``candidates = k`` (one stage).

    Storage: ``gate_up`` ``(I, n, hidden)`` holds neuron ``j``'s gate and up rows side by side (``n = 2``, or
    ``n = 1`` without a gate), so one ``index_select`` reads both; ``down_t = W_down^T`` ``(I, hidden)``, whose
    kept rows are summed by ``embedding_bag`` (weighted by ``h``) without being copied first.
    """

    def __init__(self, mlp: nn.Module, mode: str, *, k: int | None = None, threshold: float | None = None,
                 predictor: tuple[torch.Tensor, torch.Tensor] | None = None, candidates: int | None = None):
        super().__init__()
        gate = getattr(mlp, "gate_proj", None)
        up, down = mlp.up_proj, mlp.down_proj
        width = up.out_features
        if mode not in ("topk", "threshold", "predictor"):
            raise ValueError(f"SparseMLP: mode must be 'topk', 'threshold' or 'predictor', got {mode!r}")
        if mode != "threshold" and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= width):
            raise ValueError(f"SparseMLP: k={k!r} neurons kept per token must be an integer in [1, {width}] (the MLP's "
                             f"intermediate width); give a smaller k or a sparsity in [0, 1)")
        if candidates is not None and (mode != "predictor" or isinstance(candidates, bool) or not isinstance(candidates, int)
                                       or not k <= candidates <= width):
            raise ValueError(f"SparseMLP: candidates={candidates!r} must be an integer in [k={k}, {width}] and needs "
                             f"mode='predictor'; give None for one stage")
        self.mode, self.k, self.act_fn = mode, k, mlp.act_fn
        self.candidates = k if mode == "predictor" and candidates is None else candidates
        self.width, self.hidden = width, up.in_features
        self.gated = gate is not None
        lins = (gate, up) if self.gated else (up,)
        self.gate_up = nn.Parameter(torch.stack([m.weight.detach() for m in lins], 1).contiguous())  # (I, n, hidden)
        if all(m.bias is None for m in lins):
            self.gate_up_bias = None
        else:
            self.gate_up_bias = nn.Parameter(torch.stack(
                [torch.zeros(width, dtype=m.weight.dtype) if m.bias is None else m.bias.detach() for m in lins], 1))  # (I, n)
        self.down_t = nn.Parameter(down.weight.detach().t().contiguous())  # (I, hidden): neuron j's output column as a row
        self.down_bias = None if down.bias is None else nn.Parameter(down.bias.detach().clone())
        self.register_buffer("threshold", torch.tensor(float("nan") if threshold is None else float(threshold)))
        if mode == "predictor":
            A, B = predictor
            self.pred_a = nn.Parameter(A.detach().clone().contiguous())
            self.pred_b = nn.Parameter(B.detach().clone().contiguous())
        else:
            self.pred_a = self.pred_b = None

    @property
    def kernel(self) -> str:
        # the one-token decode path reads only the kept rows (all three matrices with a predictor, the down
        # projection's otherwise): bytes read per token fall, so its speed is a real sparse computation
        return "real-kernel"

    def bytes_read_fraction(self, kept: float) -> float:
        """Weight bytes a decode token reads relative to the dense MLP, with ``kept`` neurons on average."""
        n_in = self.gate_up.shape[1]
        if self.mode == "predictor":
            pred = self.pred_a.numel() + self.pred_b.numel()
            return (n_in * self.candidates * self.hidden + kept * self.hidden + pred) / ((n_in + 1) * self.width * self.hidden)
        return (n_in * self.width + kept) / ((n_in + 1) * self.width)

    def _h(self, gu: torch.Tensor) -> torch.Tensor:
        """``h = act(g) * u`` from ``gu: (..., n)`` (``act(u)`` without a gate)."""
        return self.act_fn(gu[..., 0]) * gu[..., 1] if self.gated else self.act_fn(gu[..., 0])

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``h = act(gate x) * up x``: ``(..., I)`` (one GEMM over the interleaved gate / up rows)."""
        n = self.gate_up.shape[1]
        gu = F.linear(x, self.gate_up.reshape(-1, self.hidden)).unflatten(-1, (self.width, n))  # (..., I, n)
        if self.gate_up_bias is not None:
            gu = gu + self.gate_up_bias
        return self._h(gu)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictor scores ``(x A) B``: ``(..., I)``."""
        return (x @ self.pred_a) @ self.pred_b

    def mask(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """The kept neurons of each token, boolean ``(..., I)``."""
        if self.mode == "predictor":  # the highest scores (logits: signed, not magnitudes)
            s = self.predict(x)
            cand = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, s.topk(self.candidates, dim=-1).indices, True)
            if self.candidates == self.k:
                return cand
            h = self.activations(x) if h is None else h  # second stage: the k largest |h| among the candidates
            a = h.abs().masked_fill(~cand, -1.0)
            return torch.zeros_like(cand).scatter_(-1, a.topk(self.k, dim=-1).indices, True)
        h = self.activations(x) if h is None else h
        if self.mode == "topk":
            return topk_mask(h, self.k)
        return h.abs() > self.threshold

    def dense_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``W_down (h * mask)``: the reference computation with a given mask."""
        h = self.activations(x) * mask.to(x.dtype)
        return F.linear(h, self.down_t.t(), self.down_bias)

    def _down(self, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``sum_j h_j down_t[idx_j]``: ``embedding_bag`` reads the kept rows in place (no gathered copy)."""
        y = F.embedding_bag(idx.view(1, -1), self.down_t, per_sample_weights=h.view(1, -1), mode="sum")[0]
        return y if self.down_bias is None else y + self.down_bias

    def decode(self, x: torch.Tensor, idx: torch.Tensor, h_full: torch.Tensor | None = None) -> torch.Tensor:
        """One token ``x: (hidden,)`` with computed neuron indices ``idx: (K,)``: reads the rows ``idx`` only
        (with ``h_full``, the dense activations, only the down projection's). With candidates (two
        stages), ``idx`` are the candidates and the ``k`` largest ``|h|`` among them pass on."""
        if h_full is None:
            gu = torch.index_select(self.gate_up, 0, idx) @ x  # (K', n): gate and up rows of a neuron adjacent
            if self.gate_up_bias is not None:
                gu = gu + self.gate_up_bias[idx]
            h = self._h(gu)
            if idx.numel() > self.k:
                keep = h.abs().topk(self.k).indices
                h, idx = h[keep], idx[keep]
        else:
            h = h_full[idx]
        return self._down(h, idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.shape[0] == 1:  # batch-1 decode: the sparse path
            xt = x2[0]
            if self.mode == "predictor":
                idx = self.predict(xt).topk(self.candidates).indices
                return self.decode(xt, idx).reshape(shape)
            h = self.activations(xt)
            idx = h.abs().topk(self.k).indices if self.mode == "topk" else (h.abs() > self.threshold).nonzero().reshape(-1)
            return self.decode(xt, idx, h_full=h).reshape(shape)
        h = self.activations(x)
        m = self.mask(x, h)
        return F.linear(h * m.to(h.dtype), self.down_t.t(), self.down_bias)


def capture_mlp_io(model: nn.Module, mlps: list[tuple[str, nn.Module]], calib: list, *, want_inputs: bool,
                   max_values: int, max_tokens: int, generator: torch.Generator) -> dict[str, dict]:
    """One pass of the dense model over ``calib``: per MLP, ``|h|`` values (the down projection's input,
    a random subsample of at most ``max_values``) and, with ``want_inputs``, up to ``max_tokens`` pairs
    (MLP input ``x``, activations ``h``)."""
    from ..calibration import call_model, move

    # the MLP's pre-hook (x) runs before down_proj's (h) within one call: separate counters keep the two
    # aligned token for token (with one counter the window that reached max_tokens lost its h)
    store = {n: {"absh": [], "x": [], "h": [], "n_x": 0, "n_h": 0} for n, _ in mlps}
    hooks = []
    for name, m in mlps:
        def pre_down(_mod, args, name=name):
            h = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            s = store[name]
            s["absh"].append(h.abs().reshape(-1))
            if want_inputs and s["n_h"] < max_tokens:
                s["h"].append(h[: max_tokens - s["n_h"]])
                s["n_h"] += min(h.shape[0], max_tokens - s["n_h"])

        def pre_mlp(_mod, args, name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            s = store[name]
            if s["n_x"] < max_tokens:
                s["x"].append(x[: max_tokens - s["n_x"]])
                s["n_x"] += min(x.shape[0], max_tokens - s["n_x"])

        hooks.append(m.down_proj.register_forward_pre_hook(pre_down))
        if want_inputs:
            hooks.append(m.register_forward_pre_hook(pre_mlp))
    dev = next(model.parameters()).device
    try:
        with torch.no_grad():
            for x in calib:
                call_model(model, move(x, dev))
                for s in store.values():  # subsample as we go, so memory stays bounded
                    v = torch.cat(s["absh"])
                    if v.numel() > max_values:
                        v = v[torch.randperm(v.numel(), generator=generator)[:max_values]]
                    s["absh"] = [v]
    finally:
        for h in hooks:
            h.remove()
    for s in store.values():
        s["absh"] = torch.cat(s["absh"])
        if want_inputs:
            s["x"], s["h"] = torch.cat(s["x"]), torch.cat(s["h"])
            assert s["x"].shape[0] == s["h"].shape[0], "MLP inputs and activations out of step"
    return store


def candidates_for_recall(scores: torch.Tensor, labels: torch.Tensor, recall: float, k: int) -> int:
    """The smallest ``K' >= k`` whose top-``K'`` ``scores`` hold at least ``recall`` of the ``labels``
    (boolean ``(N, I)``) over all tokens; ``I`` if none does. Bisection: recall grows with ``K'``."""
    order = scores.argsort(dim=-1, descending=True)
    hits = labels.gather(-1, order).long().sum(0).cumsum(0)  # hits[j]: labels among each token's top j+1, summed
    need = math.ceil(recall * int(labels.sum()) - 1e-9)  # whole neurons (no float32 rounding of the ratio)
    ok = (hits >= need).nonzero()
    return scores.shape[-1] if ok.numel() == 0 else max(k, int(ok[0, 0]) + 1)


def train_predictor(x: torch.Tensor, h: torch.Tensor, *, rank: int, k: int, steps: int, lr: float,
                    generator: torch.Generator, recall: float | None = None) -> dict:
    """Fit ``scores = (x A) B`` to the truly active neurons (top-``k`` ``|h|`` of each token) by binary
    cross-entropy (Deja Vu's predictor, low-rank instead of a two-layer MLP). ``x: (N, hidden)``,
    ``h: (N, I)``. Each label is weighted by ``| |h| - t |`` (``t`` the token's k-th largest ``|h|``, weights
    normalised to mean 1): near-ties at the boundary cost little either way, a large neuron missed costs
    much. Adam with a cosine-annealed learning rate.

    Returns ``{"A", "B", "recall", "mass_recall", "candidates", "candidate_recall"}``, measured on the held-out
    last eighth of the tokens: ``recall`` of the top-``k`` scores against the true top-``k``; ``mass_recall``:
    the share of ``sum h^2`` in the predicted neurons; with ``recall`` given, ``candidates`` is the ``K'`` whose
    top-``K'`` scores hold that recall (:func:`candidates_for_recall`, on the first half of the held-out tokens) and
    ``candidate_recall`` what they hold on the second half: the recall of the two-stage kept set."""
    n, hidden = x.shape
    width = h.shape[1]
    labels = topk_mask(h, k)
    a = h.abs()
    t = a.topk(k, dim=-1).values[:, -1:]
    w = (a - t).abs()
    w = w / w.mean().clamp(min=1e-12)
    n_val = max(1, n // 8)
    xt, yt, wt = x[:-n_val], labels[:-n_val].float(), w[:-n_val]
    xv, yv, hv = x[-n_val:], labels[-n_val:], h[-n_val:]
    A = (torch.randn(hidden, rank, generator=generator) / math.sqrt(hidden)).requires_grad_(True)
    B = (torch.randn(rank, width, generator=generator) / math.sqrt(rank)).requires_grad_(True)
    pos = yt.mean().clamp(1e-3, 1 - 1e-3)  # class balance: 1 at 50% sparsity
    opt = torch.optim.Adam([A, B], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    batch = min(1024, xt.shape[0])
    with torch.enable_grad():
        for _ in range(steps):
            i = torch.randint(0, xt.shape[0], (batch,), generator=generator)
            loss = F.binary_cross_entropy_with_logits((xt[i] @ A) @ B, yt[i], weight=wt[i], pos_weight=(1 - pos) / pos)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        s = (xv @ A) @ B
        top = s.topk(k, dim=-1).indices
        pred = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, top, True)
        out = {"A": A.detach(), "B": B.detach(), "recall": float((pred & yv).sum() / yv.sum().clamp(min=1)),
               "mass_recall": float((hv.gather(-1, top) ** 2).sum() / (hv ** 2).sum().clamp(min=1e-30))}
        if recall is not None:  # K' from the first half of the held-out tokens, its recall on the second
            half = max(1, n_val // 2) if n_val > 1 else 1
            kc = candidates_for_recall(s[:half], yv[:half], recall, k)
            s2, y2 = (s[half:], yv[half:]) if n_val > 1 else (s, yv)
            cand = torch.zeros_like(s2, dtype=torch.bool).scatter_(-1, s2.topk(kc, dim=-1).indices, True)
            out.update(candidates=kc, candidate_recall=float((cand & y2).sum() / y2.sum().clamp(min=1)))
    return out


def _record(name, cfg, mlp_old, new, extra):
    from ..transform import LayerRecord, state_bytes

    return LayerRecord(name, cfg.name, (new.width, new.hidden), state_bytes(mlp_old), state_bytes(new), extra=extra)


def _register():
    from ..rng import seed_from  # noqa: F401  (keeps the import graph explicit)
    from ..transform import Transform, transform_for
    from .configs import ActivationSparsity, NeuronPredictor

    @transform_for(ActivationSparsity)
    class _ActivationSparsity(Transform):
        def run(self, model, calib, ctx):
            c = self.config
            mlps = require_mlps(model, c.skip, c.name)
            store = None
            if c.method == "threshold":
                store = capture_mlp_io(model, mlps, calib, want_inputs=False, max_values=c.calib_values, max_tokens=0,
                                       generator=torch.Generator().manual_seed(ctx.seed))
            recs = []
            for name, m in mlps:
                width = m.up_proj.out_features
                if c.method == "topk":
                    new = SparseMLP(m, "topk", k=kept_count(width, c.sparsity))
                    extra = {"k": new.k, "bytes_read_fraction": new.bytes_read_fraction(new.k)}
                else:
                    v = store[name]["absh"]
                    thr = threshold_for(v, c.sparsity)
                    new = SparseMLP(m, "threshold", threshold=thr)
                    reached = float((v <= thr).float().mean())
                    extra = {"threshold": thr, "calib_sparsity": reached,
                             "bytes_read_fraction": new.bytes_read_fraction((1 - c.sparsity) * width)}
                model.set_submodule(name, new)
                recs.append(_record(name, c, m, new, extra))
            return recs

    @transform_for(NeuronPredictor)
    class _NeuronPredictor(Transform):
        def run(self, model, calib, ctx):
            c = self.config
            mlps = require_mlps(model, c.skip, c.name)
            g = torch.Generator().manual_seed(ctx.seed)
            store = capture_mlp_io(model, mlps, calib, want_inputs=True, max_values=1, max_tokens=c.max_tokens, generator=g)
            recs = []
            for name, m in mlps:
                width = m.up_proj.out_features
                if c.rank >= min(width, m.up_proj.in_features):
                    raise ValueError(f"{c.name}: rank {c.rank} is not below the MLP's widths ({m.up_proj.in_features}, "
                                     f"{width}) at {name}; a predictor that large costs more than the MLP: lower rank")
                k = kept_count(width, c.sparsity)
                s = store[name]
                fit = train_predictor(s["x"], s["h"], rank=c.rank, k=k, steps=c.steps, lr=c.lr, generator=g, recall=c.recall)
                A, B = fit["A"].to(m.up_proj.weight), fit["B"].to(m.up_proj.weight)
                new = SparseMLP(m, "predictor", k=k, predictor=(A, B), candidates=fit.get("candidates"))
                model.set_submodule(name, new)
                extra = {"k": k, "recall": fit["recall"], "mass_recall": fit["mass_recall"],
                         "bytes_read_fraction": new.bytes_read_fraction(k)}
                if c.recall is not None:
                    extra.update(candidates=fit["candidates"], candidate_recall=fit["candidate_recall"])
                recs.append(_record(name, c, m, new, extra))
                log.info("%s %s: held-out recall %.3f (h^2 mass %.3f)%s", c.name, name, fit["recall"], fit["mass_recall"],
                         "" if c.recall is None else f", {fit['candidates']} candidates hold {fit['candidate_recall']:.3f}")
            return recs


_register()
