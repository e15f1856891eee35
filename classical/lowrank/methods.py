"""The LowRank transform: observe what the method needs, factorise, build a :class:`LowRankLinear`."""

from __future__ import annotations

from ..calibration import move, observe_inputs
from ..layers import linear_weight
from ..transform import LayerRecord, LinearTransform, Transform, output_rel_error, state_bytes, transform_for
from .configs import FactorizedEmbedding, LowRank
from .factor import asvd_factors, rank_for_ratio, svd_factors, whitened_svd_factors
from .modules import LowRankLinear


def _crop(x, n: int | None):
    """The first ``n`` positions of a ``(B, T)`` token-id input (or of each such tensor of a dict)."""
    import torch

    def cut(t):
        return t[:, :n] if isinstance(t, torch.Tensor) and t.dim() == 2 and not t.is_floating_point() else t

    if n is None:
        return x
    return {k: cut(v) for k, v in x.items()} if isinstance(x, dict) else cut(x)


@transform_for(LowRank)
class _LowRank(LinearTransform):
    def _rank(self, shape) -> int:
        c = self.config
        return c.rank if c.rank is not None else rank_for_ratio(shape[0], shape[1], c.removed)

    def layer_check(self, name, weight):
        super().layer_check(name, weight)
        k = self._rank(weight.shape)
        if self.config.rank is not None and k > min(weight.shape):
            raise ValueError(f"layer {name!r}: rank {k} is larger than its {tuple(weight.shape)} matrix allows "
                             f"(at most {min(weight.shape)}); lower the rank or skip the layer")
        if k < 1:
            raise ValueError(f"layer {name!r}: removed={self.config.removed} leaves rank 0 for its {tuple(weight.shape)} matrix; "
                             "remove less or skip the layer")

    def make_observer(self, group, total_rows, ctx):
        m = self.config.method
        if m == "svd":
            return None
        return group.observer(hessian=m == "svd-llm", absmean=m == "asvd")

    def run(self, model, calib, ctx):
        self._ranks = self._search(model, calib) if self.config.allocation == "sensitivity" else None
        return super().run(model, calib, ctx)

    def _search(self, model, calib) -> dict:
        """ASVD's rank search on the unmodified model (``allocation="sensitivity"``)."""
        from .allocation import sensitivity_ranks

        c = self.config
        targets = self.targets(model)
        device = next(model.parameters()).device
        inputs = [move(_crop(x, c.search_tokens), device) for x in list(calib)[: c.search_samples]]
        stats: dict = {}
        if c.method != "svd":  # the inputs' mean |x| (ASVD) or covariance (SVD-LLM) of every layer
            obs = observe_inputs(model, inputs, targets, hessian=c.method == "svd-llm", absmean=c.method == "asvd")
            stats = {n: o.absmean if c.method == "asvd" else o.H for n, o in obs.items()}
        return sensitivity_ranks(model, targets, stats, inputs, removed=c.removed, method=c.method, alpha=c.alpha,
                                 damp=c.damp)

    def convert(self, name, module, group, observer, ctx):
        c = self.config
        w = linear_weight(module).detach()
        ranks = getattr(self, "_ranks", None)
        k = ranks[name] if ranks is not None else self._rank(w.shape)
        if k is None:
            return module, {"rank": None, "note": "kept dense by the rank search"}
        extra = {"rank": k}
        if c.method == "svd":
            A, B = svd_factors(w, k)
        elif c.method == "asvd":
            A, B = asvd_factors(w, observer.absmean, k, alpha=c.alpha)
        else:
            H = observer.H.to(w.device)
            A, B, s = whitened_svd_factors(w, H, k, damp=c.damp)
            extra["output_rel_error"] = output_rel_error(w, (A @ B), H)
        bias = None if module.bias is None else module.bias.detach()
        return LowRankLinear(A, B, bias, method=c.name), extra


@transform_for(FactorizedEmbedding)
class _FactorizedEmbedding(Transform):
    def run(self, model, calib, ctx):
        from torch import nn

        from ..blocks import skipped
        from .embedding import factorize_embedding

        c = self.config
        found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding) and not skipped(n, c.skip)]
        if not found:
            raise ValueError(f"{c.name}: the model has no nn.Embedding layers outside skip={c.skip!r}")
        recs = []
        for name, emb in found:
            before = state_bytes(emb)
            new = factorize_embedding(emb, method=c.method, rank=c.rank, n_factors=c.n_factors)
            err = float((new.weight - emb.weight).norm() / emb.weight.norm().clamp(min=1e-30))
            model.set_submodule(name, new)
            recs.append(LayerRecord(name, c.name, tuple(emb.weight.shape), before, state_bytes(new), weight_rel_error=err))
        return recs
