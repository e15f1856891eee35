"""The transforms behind RTN, LLMInt8, SmoothQuant, GPTQ and AWQ: observe what each method needs,
call its pure primitive, and build a :class:`QuantizedLinear` holding the packed result."""

from __future__ import annotations

import torch

from ..calibration import ActivationObserver
from ..granularity import PerTensor
from ..transform import LinearTransform, output_rel_error, transform_for
from . import awq as _awq
from .configs import AWQ, GPTQ, RTN, LLMInt8, SmoothQuant
from .gptq import gptq_quantize
from .modules import QuantizedLinear, linear_weight
from .primitives import quantize_weight


def _bias(m):
    return None if m.bias is None else m.bias.detach()


def _rtn_linear(w, bits, symmetric, granularity, bias, method, **kw) -> QuantizedLinear:
    gs = granularity.group_size(w.shape[1])
    codes, scale, zero = quantize_weight(w.float(), bits, symmetric, gs, per_tensor=isinstance(granularity, PerTensor))
    return QuantizedLinear(codes, scale, zero, bits=bits, symmetric=symmetric, group_size=gs, bias=bias, method=method, **kw)


@transform_for(RTN)
class _RTN(LinearTransform):
    def convert(self, name, module, group, observer, ctx):
        c = self.config
        w = linear_weight(module).detach()
        return _rtn_linear(w, c.bits, c.symmetric, c.granularity, _bias(module), c.name, act_bits=c.act_bits), {}


@transform_for(LLMInt8)
class _LLMInt8(LinearTransform):
    def make_observer(self, group, total_rows, ctx):
        if not self.config.keep_outlier_weights:
            return None
        return group.observer(absmax=True)

    def convert(self, name, module, group, observer, ctx):
        from ..granularity import PerChannel

        w = linear_weight(module).detach()
        thr = None if self.config.threshold == float("inf") else float(self.config.threshold)
        new = _rtn_linear(w, 8, True, PerChannel(), _bias(module), self.config.name, act_bits=8, outlier_threshold=thr)
        extra = {}
        if observer is not None and thr is not None:
            cols = torch.nonzero(observer.absmax.to(w.device) >= thr).flatten()
            new.set_outlier_weights(cols, w[:, cols])
            extra["outlier_columns"] = int(cols.numel())
        return new, extra


@transform_for(SmoothQuant)
class _SmoothQuant(LinearTransform):
    def make_observer(self, group, total_rows, ctx):
        return group.observer(absmax=True)

    def prepare_group(self, group, observer, ctx):
        # Eq. 4: s_j = max|X_j|^a / max|W_j|^(1-a), W_j over every layer reading this input.
        a = self.config.alpha
        w_absmax = torch.stack([linear_weight(m).detach().abs().amax(dim=0).float() for m in group.modules]).amax(dim=0)
        x_absmax = observer.absmax.to(w_absmax.device)
        s = (x_absmax.clamp(min=1e-5).pow(a) / w_absmax.clamp(min=1e-5).pow(1 - a)).clamp(min=1e-5)
        self._s = s

    def convert(self, name, module, group, observer, ctx):
        from ..granularity import PerChannel

        w = linear_weight(module).detach().float()
        s = self._s.to(w.device)
        new = _rtn_linear(
            w * s, self.config.bits, True, PerChannel(), _bias(module), self.config.name,
            input_scale=1.0 / s, act_bits=self.config.bits,
        )
        return new, {"smooth_scale_max": float(s.max()), "smooth_scale_min": float(s.min())}


@transform_for(GPTQ)
class _GPTQ(LinearTransform):
    def make_observer(self, group, total_rows, ctx):
        return group.observer(hessian=True)

    def convert(self, name, module, group, observer, ctx):
        c = self.config
        w = linear_weight(module).detach().float()
        H = observer.H.to(w.device)
        gs = c.granularity.group_size(w.shape[1])
        r = gptq_quantize(
            w, H, bits=c.bits, group_size=gs if gs < w.shape[1] else None, symmetric=c.symmetric,
            act_order=c.act_order, damp=c.damp, block_size=c.block_size, static_groups=c.static_groups,
        )
        new = QuantizedLinear(
            r["codes"], r["scale"], r["zero"], bits=c.bits, symmetric=c.symmetric, group_size=gs, bias=_bias(module),
            g_idx=r["g_idx"], method=c.name,
        )
        return new, {"output_rel_error": output_rel_error(w, new.effective_weight().to(w.device), H), "gptq_loss": r["loss"]}


@transform_for(AWQ)
class _AWQ(LinearTransform):
    def make_observer(self, group, total_rows, ctx):
        rows = self.config.search_rows
        return ActivationObserver(
            group.names[0], linear_weight(group.modules[0]).shape[1], absmean=True,
            max_rows=rows if rows else total_rows, total_rows=total_rows, seed=ctx.seed,
        )

    def prepare_group(self, group, observer, ctx):
        c = self.config
        x = observer.samples()
        W = torch.cat([linear_weight(m).detach().float() for m in group.modules]).to(x.device)
        gs = c.granularity.group_size(W.shape[1])
        s, losses = _awq.search_scale(x, W, observer.absmean.to(x.device), bits=c.bits, group_size=gs,
                                      symmetric=c.symmetric, n_grid=c.n_grid)
        self._s, self._losses, self._x = s, losses, x

    def convert(self, name, module, group, observer, ctx):
        c = self.config
        w = linear_weight(module).detach().float()
        s = self._s.to(w.device)
        ws = w * s
        gs = c.granularity.group_size(w.shape[1])
        x = self._x.to(w.device)
        if c.clip:
            # The clipping search sees the scaled weight and the correspondingly unscaled input.
            xs = x / s
            if c.clip_rows and xs.shape[0] > c.clip_rows:
                xs = xs[torch.linspace(0, xs.shape[0] - 1, c.clip_rows).long()]
            m = _awq.search_clip(xs, ws, bits=c.bits, group_size=gs, symmetric=c.symmetric, n_grid=c.n_grid)
            lim = m.repeat_interleave(gs, dim=1)[:, : w.shape[1]]  # (out, in) clipping magnitude per column
            ws = torch.maximum(torch.minimum(ws, lim), -lim)
        new = _rtn_linear(ws, c.bits, c.symmetric, c.granularity, _bias(module), c.name, input_scale=1.0 / s)
        ref = x @ w.t()
        err = float((x @ new.effective_weight().to(w.device).t() - ref).pow(2).sum() / ref.pow(2).sum().clamp(min=1e-30))
        best_k = min(range(len(self._losses)), key=self._losses.__getitem__)
        return new, {"output_rel_error": err, "awq_ratio": best_k / c.n_grid}
