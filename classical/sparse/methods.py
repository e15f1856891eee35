"""The transforms behind Magnitude, Wanda and SparseGPT: observe what each needs, call its pure
primitive, and build a :class:`SparseLinear` with the fixed mask."""

from __future__ import annotations

from ..layers import linear_weight
from ..transform import LinearTransform, output_rel_error, transform_for
from .configs import Magnitude, SparseGPT, Wanda
from .masks import nm_mask, unstructured_mask, wanda_scores
from .modules import SparseLinear
from .sparsegpt import sparsegpt_prune


def _bias(m):
    return None if m.bias is None else m.bias.detach()


class _SparseTransform(LinearTransform):
    """Shared checks: an N:M pattern's M must divide every target's input dimension."""

    def layer_check(self, name, weight):
        super().layer_check(name, weight)
        nm = self.config.pattern
        if nm is not None and weight.shape[1] % nm.m:
            raise ValueError(
                f"layer {name!r}: pattern {nm} needs its input dimension {weight.shape[1]} to be a multiple of "
                f"M={nm.m}; use another pattern or leave the layer out with skip=({name!r},)"
            )

    def _build(self, module, weight, mask, extra):
        new = SparseLinear(weight.to(linear_weight(module).dtype), mask, _bias(module), pattern=None if self.config.pattern is None else str(self.config.pattern),
                           method=self.config.name)
        extra["sparsity"] = new.sparsity
        return new, extra


@transform_for(Magnitude)
class _Magnitude(_SparseTransform):
    def convert(self, name, module, group, observer, ctx):
        w = linear_weight(module).detach()
        nm = self.config.pattern
        mask = nm_mask(w.abs(), nm) if nm else unstructured_mask(w.abs(), self.config.removed)
        return self._build(module, w, mask, {})


@transform_for(Wanda)
class _Wanda(_SparseTransform):
    def make_observer(self, group, total_rows, ctx):
        return group.observer(sqsum=True)

    def convert(self, name, module, group, observer, ctx):
        w = linear_weight(module).detach()
        s = wanda_scores(w, observer.sqsum.to(w.device))
        nm = self.config.pattern
        mask = nm_mask(s, nm) if nm else unstructured_mask(s, self.config.removed, per_row=True)
        return self._build(module, w, mask, {})


@transform_for(SparseGPT)
class _SparseGPT(_SparseTransform):
    def make_observer(self, group, total_rows, ctx):
        return group.observer(hessian=True)

    def convert(self, name, module, group, observer, ctx):
        c = self.config
        w = linear_weight(module).detach().float()
        H = observer.H.to(w.device)
        r = sparsegpt_prune(w, H, sparsity=c.removed, pattern=c.pattern, block_size=c.block_size, damp=c.damp)
        extra = {"output_rel_error": output_rel_error(w, r["weight"], H), "sparsegpt_loss": r["loss"]}
        return self._build(module, r["weight"], r["mask"], extra)


