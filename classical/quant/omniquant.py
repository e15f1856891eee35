"""OmniQuant (Shao et al., ICLR 2024, arXiv:2308.13137): learnable weight clipping (LWC) and learnable
equivalent transformation (LET), trained block by block, folded into ordinary quantized layers.

* LWC (Sec. 3.2, Eq. 2). Per group (or output channel), two strengths ``gamma, beta`` in ``(0, 1]``
  (sigmoids of learnable logits) shrink the range the asymmetric grid covers:

      h = (gamma * max(W) - beta * min(W)) / (2**b - 1),   z = -round(beta * min(W) / h),
      W_q = h * (clamp(round(W / h) + z, 0, 2**b - 1) - z),

  with straight-through rounding, so gradients reach the strengths (and the LET scales). At
  ``gamma = beta = 1`` this is exactly qlite's asymmetric RTN grid
  (:func:`qlite.classical.quant.primitives.fake_quantize`): the range widened to contain 0, the step
  rounded to float16 as stored.
* LET (Sec. 3.3, Eq. 3-5). Between a normalisation layer and the linears reading its output, a
  channel-wise scale ``s`` and shift ``delta``: ``Y = ((X - delta) / s) (s * W) + (B + delta W)``, the
  same function with an easier activation for per-token quantization. ``1/s`` (and ``-delta/s``) fold
  into the norm's weight (and bias), ``s`` and ``delta W`` into the linears. RMSNorm has no bias to take
  the shift, so there only the scale is learned.
* Block reconstruction (Sec. 3.1, Eq. 1). For each block in turn, the full-precision block's output on
  the full-precision stream is the target; the block with fake-quantized weights (and activations) is
  fed the quantized stream (the previous blocks already quantized) and its MSE to the target is
  minimised with AdamW over the LWC logits and LET parameters, one calibration item per step.

Pure primitives (:func:`round_ste`, :func:`lwc_fake_quantize`, :func:`lwc_quantize`) are apart from the
transform, which reuses qlite's block finder and calibration capture.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def _check(gamma, beta, bits, fn):
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"{fn}: bits must be an integer in [2, 8], got {bits!r}")
    with torch.no_grad():
        for n, s in (("gamma", gamma), ("beta", beta)):
            if not bool(((s > 0) & (s <= 1)).all()):
                raise ValueError(f"{fn}: {n} must lie in (0, 1] (a sigmoid of a logit), "
                                 f"got values in [{float(s.min()):.3g}, {float(s.max()):.3g}]")


def _lwc_grid(w, gamma, beta, bits, group_size):
    """Groups ``(out, n_groups, g)`` of ``w`` (zero-padded), step ``h`` and zero point ``z`` ``(out, n_groups)``."""
    out, n = w.shape
    pad = (-n) % group_size
    wp = F.pad(w, (0, pad)).reshape(out, -1, group_size)  # (out, n_groups, g)
    maxq = 2**bits - 1
    wmax = (gamma * wp.amax(dim=-1)).clamp(min=0)  # (out, n_groups); the grid contains 0 as in RTN
    wmin = (beta * wp.amin(dim=-1)).clamp(max=0)
    h = (wmax - wmin) / maxq
    h = torch.where(h > 0, h, torch.ones_like(h))
    h = h + (h.to(torch.float16).float().clamp(min=6.1e-5) - h).detach()  # float16 step, as stored
    z = torch.clamp(torch.round(-wmin / h), 0, maxq).detach()
    return wp, h, z


def lwc_fake_quantize(w: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Quantize-dequantize ``w`` ``(out, in)`` with clipping strengths ``gamma`` / ``beta`` of shape
    ``(out, n_groups)`` (broadcastable; ``n_groups = ceil(in / group_size)``, a shorter last group is
    padded with zeros, which change neither range nor step). Differentiable in ``w``, ``gamma`` and
    ``beta`` (straight-through rounding).

    Raises:
        ValueError: strengths outside ``(0, 1]`` or bits outside [2, 8].
    """
    _check(gamma, beta, bits, "lwc_fake_quantize")
    out, n = w.shape
    wp, h, z = _lwc_grid(w, gamma, beta, bits, group_size)
    q = torch.clamp(round_ste(wp / h[..., None]) + z[..., None], 0, 2**bits - 1)
    return (h[..., None] * (q - z[..., None])).reshape(out, -1)[:, :n]


@torch.no_grad()
def lwc_quantize(w: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, bits: int, group_size: int):
    """The stored form of :func:`lwc_fake_quantize`: ``codes`` ``(out, in)`` uint8, ``scale`` (float16
    values) and ``zero`` ``(out, n_groups)``, so that ``(codes - zero) * scale`` (per group) equals
    ``lwc_fake_quantize(w, gamma, beta, bits, group_size)`` exactly."""
    _check(gamma, beta, bits, "lwc_quantize")
    out, n = w.shape
    wp, h, z = _lwc_grid(w.float(), gamma, beta, bits, group_size)
    q = torch.clamp(torch.round(wp / h[..., None]) + z[..., None], 0, 2**bits - 1)
    return q.reshape(out, -1)[:, :n].to(torch.uint8).contiguous(), h, z


def _per_token_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`qlite.classical.quant.primitives.quantize_per_token` with straight-through rounding (the
    per-token scale stays differentiable, so the LET scales see the activation quantization)."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / qmax
    return torch.clamp(round_ste(x / scale), -qmax - 1, qmax) * scale


class _LET(nn.Module):
    """The scale ``s`` ``(in,)`` (and shift ``delta``) of one normalisation layer's output."""

    def __init__(self, scale: torch.Tensor, shift: bool):
        super().__init__()
        self.scale = nn.Parameter(scale.detach().float().clone())
        self.shift = nn.Parameter(torch.zeros_like(self.scale)) if shift else None

    def s(self) -> torch.Tensor:
        return self.scale.clamp(min=1e-5)  # a scale driven to 0 would divide by 0

    def on_norm_output(self, _m, _args, out):  # forward hook: (X - delta) / s
        return ((out - self.shift) if self.shift is not None else out) / self.s().to(out.dtype)


class _OmniLinear(nn.Module):
    """A frozen linear used through LWC fake quantization (and the LET of its input, if any)."""

    def __init__(self, weight, bias, bits, group_size, act_bits, init):
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())  # (out, in)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        n_groups = -(-weight.shape[1] // group_size)
        self.gamma_logit = nn.Parameter(torch.full((weight.shape[0], n_groups), float(init)))
        self.beta_logit = nn.Parameter(torch.full((weight.shape[0], n_groups), float(init)))
        self.bits, self.group_size, self.act_bits = bits, group_size, act_bits
        self.let: _LET | None = None  # set when the input's producer is transformed (not a submodule)
        self.mode = "learned"  # "rtn": strengths 1, no LET; "float": LET only, no quantization

    def effective(self):
        """``(s * W, B + W delta)``: the weight and bias the quantized layer stores."""
        w, b = self.weight, self.bias
        if self.let is not None and self.mode != "rtn":
            if self.let.shift is not None:
                wd = w @ self.let.shift
                b = wd if b is None else b + wd
            w = w * self.let.s()
        return w, b

    def strengths(self):
        if self.mode == "rtn":
            one = torch.ones_like(self.gamma_logit)
            return one, one
        return torch.sigmoid(self.gamma_logit), torch.sigmoid(self.beta_logit)

    def forward(self, x):
        w, b = self.effective()
        if self.mode != "float":
            w = lwc_fake_quantize(w, *self.strengths(), self.bits, self.group_size)
            if self.act_bits is not None:
                x = _per_token_ste(x, self.act_bits)
        return F.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))


def _hidden(call) -> torch.Tensor:
    args, kwargs = call
    return args[0] if args else next(iter(kwargs.values()))


def _producers(block: nn.Module, prefix: str, linears: dict[str, nn.Module], call):
    """For one forward of ``block``: the module whose output each linear reads (``name -> (producer name,
    producer, producer input)`` or ``None`` when the input is no submodule's output)."""
    made: dict[int, tuple] = {}
    alive, handles, seen = [], [], {}
    for n, m in block.named_modules():
        if n == "":
            continue
        def fwd(mod, a, out, n=n):
            if isinstance(out, torch.Tensor):
                alive.append(out)
                made.setdefault(id(out), (f"{prefix}.{n}" if prefix else n, mod, a[0] if a else None))
        handles.append(m.register_forward_hook(fwd))
    for name, m in linears.items():
        def pre(_m, a, name=name):
            if name not in seen:
                alive.append(a[0])
                seen[name] = made.get(id(a[0]))
        handles.append(m.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            block(*call[0], **call[1])
    finally:
        for h in handles:
            h.remove()
    return seen


def _is_norm(m: nn.Module, width: int) -> bool:
    w = getattr(m, "weight", None)
    return "norm" in type(m).__name__.lower() and isinstance(w, torch.Tensor) and tuple(w.shape) == (width,)


def _fold_into_norm(norm: nn.Module, let: _LET) -> None:
    with torch.no_grad():
        s = let.s().to(norm.weight.dtype)
        if let.shift is not None:
            norm.bias.copy_((norm.bias - let.shift.to(norm.bias.dtype)) / s)
        norm.weight.copy_(norm.weight / s)


def _register():
    import copy

    from ..blocks import find_blocks
    from ..calibration import capture_first_inputs, first_tensor, propagate
    from ..granularity import check_divides
    from ..layers import linear_weight
    from ..transform import LayerRecord, Transform, state_bytes, transform_for
    from .configs import OmniQuant
    from .modules import QuantizedLinear

    @transform_for(OmniQuant)
    class _OmniQuant(Transform):
        def run(self, model, calib, ctx):
            from ..blocks import linear_layers

            c = self.config
            targets = dict(linear_layers(model, c.skip))
            if not targets:
                raise ValueError(f"{c.name}: the model has no linear layers to quantize outside skip={c.skip!r}")
            for name, m in targets.items():
                w = linear_weight(m)
                if not torch.isfinite(w).all():
                    raise ValueError(f"layer {name!r} has non-finite weights (NaN or Inf); repair or reload the "
                                     f"checkpoint, or leave the layer out with skip=({name!r},)")
                check_divides(c.granularity, w.shape[1], name)
            undo: list = []  # (module path, original module) / (tensor, original data): restored on failure
            try:
                return self._run(model, calib, ctx, targets, undo)
            except BaseException:
                with torch.no_grad():
                    for what, orig in reversed(undo):
                        if isinstance(what, str):
                            model.set_submodule(what, orig)
                        else:
                            what.copy_(orig)
                raise

        def _gs(self, w):
            return self.config.granularity.group_size(w.shape[1])

        def _quantized(self, w, b, gamma, beta):
            c = self.config
            codes, scale, zero = lwc_quantize(w, gamma, beta, c.bits, self._gs(w))
            return QuantizedLinear(codes, scale, zero, bits=c.bits, symmetric=False, group_size=self._gs(w),
                                   bias=b, act_bits=c.act_bits, method=c.name)

        def _run(self, model, calib, ctx, targets, undo):
            c = self.config
            dev = ctx.device
            if dev is not None:
                model.to(dev)
            blocks = find_blocks(model)
            q_in = capture_first_inputs(model, blocks, calib, dev)  # the quantized stream
            fp_in = q_in  # the full-precision stream (the same until the first block changes)
            records: list[LayerRecord] = []
            done: set[str] = set()
            for i, block in enumerate(blocks.blocks):
                prefix = blocks.name(i)
                inside = {n: m for n, m in targets.items() if prefix in ("", n) or n.startswith(prefix + ".")}
                last = i + 1 == len(blocks.blocks)
                fp_next = propagate(block, fp_in)  # the target: the float block on the float stream
                if inside:
                    t0 = time.perf_counter()
                    recs = self._block(model, block, prefix, inside, q_in, [_hidden(x) for x in fp_next], undo)
                    for r in recs:
                        r.extra["block_seconds"] = time.perf_counter() - t0
                    records += recs
                    done.update(inside)
                    if blocks.container is not None:
                        block = blocks.container[i]
                if not last:
                    q_in = propagate(block, q_in)
                    fp_in = fp_next
            for name, m in targets.items():
                if name in done:
                    continue
                # Outside the blocks (no block output to reconstruct): the initial grid, strength 1 = RTN.
                w = linear_weight(m).detach().float()
                one = torch.ones(w.shape[0], -(-w.shape[1] // self._gs(w)), device=w.device)
                new = self._quantized(w, None if m.bias is None else m.bias.detach(), one, one)
                undo.append((name, m))
                model.set_submodule(name, new)
                records.append(LayerRecord(name, c.name, tuple(w.shape), state_bytes(m), state_bytes(new),
                                           float((new.effective_weight().to(w.device) - w).norm() / w.norm().clamp(min=1e-30)),
                                           None, {"omniquant": "outside the blocks: RTN grid (strength 1), not trained"}))
            return records

        def _block(self, model, block, prefix, inside, q_in, targets_out, undo):
            """Train, fold and replace the target linears ``inside`` one block; ``targets_out[j]`` is the float
            block's output on the float stream for calibration item ``j``, ``q_in`` the quantized stream."""
            c = self.config
            bname = prefix or "<model>"
            # Producers of each linear's input (found on the block as given).
            prod = _producers(block, prefix, inside, q_in[0]) if c.uses_let else {}
            omni: dict[str, _OmniLinear] = {}
            for name, m in inside.items():
                w = linear_weight(m)
                omni[name] = _OmniLinear(w, m.bias, c.bits, self._gs(w), c.act_bits, c.lwc_init).to(w.device)
                undo.append((name, m))
                model.set_submodule(name, omni[name])
            if prefix in omni:  # the block is itself a target layer (a plain nn.Sequential of layers)
                block = omni[prefix]

            def block_mse():
                tot = 0.0
                for call, tgt in zip(q_in, targets_out):
                    tot += float(F.mse_loss(first_tensor(block(*call[0], **call[1])).float(), tgt.float()))
                return tot / len(q_in)

            with torch.no_grad():
                for m in omni.values():
                    m.mode = "rtn"
                rtn_mse = block_mse()
                for m in omni.values():
                    m.mode = "learned"
            lets, hooks, flags = {}, [], {}
            try:
                if c.uses_let:
                    lets = self._init_let(block, prefix, inside, omni, prod, q_in)
                    for pname, (norm, let, names) in lets.items():
                        hooks.append(norm.register_forward_hook(let.on_norm_output))
                        for n in names:
                            omni[n].let = let
                    self._check_equivalence(block, bname, omni, lets, hooks, q_in[0])
                lwc = [p for m in omni.values() for p in (m.gamma_logit, m.beta_logit)]
                groups = [{"params": lwc, "lr": c.lwc_lr}]
                let_params = [p for _, let, _ in lets.values() for p in let.parameters()]
                if let_params:
                    groups.append({"params": let_params, "lr": c.let_lr})
                opt = torch.optim.AdamW(groups, weight_decay=0.0)
                first_loss = None
                flags = {p: p.requires_grad for p in block.parameters()}
                for p in flags:  # the block's own weights stay frozen: only the strengths / LET learn
                    p.requires_grad_(False)
                for g in groups:
                    for p in g["params"]:
                        p.requires_grad_(True)
                with torch.enable_grad():
                    for epoch in range(c.epochs):
                        for j, (call, tgt) in enumerate(zip(q_in, targets_out)):
                            out = first_tensor(block(*call[0], **call[1])).float()
                            loss = F.mse_loss(out, tgt.float())
                            if not torch.isfinite(loss):
                                raise ValueError(
                                    f"{c.name}: non-finite block reconstruction loss ({float(loss.detach())}) in block "
                                    f"{bname!r} at epoch {epoch}, item {j}; the model was left as given. Lower lwc_lr / "
                                    f"let_lr (now {c.lwc_lr} / {c.let_lr}), or check the block's weights and the "
                                    "calibration inputs")
                            if first_loss is None:
                                first_loss = float(loss.detach())
                            opt.zero_grad(set_to_none=True)
                            loss.backward()
                            opt.step()
                with torch.no_grad():
                    final_mse = block_mse()
                    if not torch.isfinite(torch.tensor(final_mse)):
                        raise ValueError(f"{c.name}: non-finite block reconstruction loss ({final_mse}) in block "
                                         f"{bname!r} after training; the model was left as given. Lower lwc_lr / "
                                         f"let_lr or check the block's weights and the calibration inputs")
                    ref_out = first_tensor(block(*q_in[0][0], **q_in[0][1])).float()
            finally:
                for h in hooks:
                    h.remove()
                for p, f in flags.items():
                    p.requires_grad_(f)
            # Fold: LET into the norms and the weights, the strengths into the stored grid.
            records = []
            with torch.no_grad():
                for pname, (norm, let, names) in lets.items():
                    for t in (norm.weight, getattr(norm, "bias", None)):
                        if isinstance(t, torch.Tensor):
                            undo.append((t, t.detach().clone()))
                    _fold_into_norm(norm, let)
                for name, m in omni.items():
                    w, b = m.effective()
                    new = self._quantized(w.detach(), None if b is None else b.detach(), *[s.detach() for s in m.strengths()])
                    model.set_submodule(name, new)
                    if name == prefix:
                        block = new
                    orig = inside[name]
                    w0 = linear_weight(orig).detach().float()
                    extra = {"block": bname, "block_mse_rtn": rtn_mse, "block_mse": final_mse,
                             "block_mse_first_step": first_loss, "epochs": c.epochs,
                             "clip_strength_mean": float(torch.cat([s.detach().flatten() for s in m.strengths()]).mean()),
                             "let": next((p for p, (_, _, ns) in lets.items() if name in ns), None)}
                    # with LET the stored weight is s * W (its input is divided by s): no like-for-like weight error
                    rel = None if extra["let"] else float((new.effective_weight().to(w0.device) - w0).norm()
                                                          / w0.norm().clamp(min=1e-30))
                    records.append(LayerRecord(name, c.name, tuple(w0.shape), state_bytes(orig), state_bytes(new),
                                               rel, None, extra))
                folded = first_tensor(block(*q_in[0][0], **q_in[0][1])).float()
                # Weight-only: bitwise equal. With LET the norm computes (w / s) * x instead of (w * x) / s, and the
                # last-bit differences can flip a per-token activation rounding: small, not zero.
                diff = float((folded - ref_out).abs().max())
                rel = float((folded - ref_out).norm() / ref_out.norm().clamp(min=1e-30))
                for r in records:
                    r.extra["fold_max_abs_diff"] = diff
                    r.extra["fold_rel_diff"] = rel
            log.info("%s: block %s mse %.4g (RTN %.4g), fold diff %.2g", c.name, bname, final_mse, rtn_mse, diff)
            return records

        def _init_let(self, block, prefix, inside, omni, prod, q_in):
            """LET groups ``{norm name: (norm, _LET, linear names)}``, initialised as SmoothQuant (Eq. 4),
            after checking that every transformed norm can take the fold."""
            from ..calibration import ActivationObserver, observe, Group

            c = self.config
            bname = prefix or "<model>"
            by_norm: dict[str, list[str]] = {}
            for name, p in prod.items():
                if p is not None and _is_norm(p[1], linear_weight(inside[name]).shape[1]):
                    by_norm.setdefault(p[0], []).append(name)
            if not by_norm:
                why = "; ".join(f"{n} reads " + ("a tensor no submodule returns (an operation's result)" if p is None
                                                  else f"the output of {p[0]} ({type(p[1]).__name__})")
                                for n, p in prod.items())
                raise ValueError(f"{c.name}: the learnable equivalent transformation folds its scale into a "
                                 f"normalisation layer (with a per-channel weight) whose output the linears read, but in "
                                 f"block {bname!r} none does: {why}. Use let=False (weight clipping only)")
            # Every linear (target or not) reading a transformed norm's output must be transformed with it.
            from ..blocks import linear_layers

            # (the targets are _OmniLinear by now: only the linears left as they are show up here)
            others = dict(linear_layers(block, (), prefix))
            all_prod = _producers(block, prefix, others, q_in[0]) if others else {}
            for n, p in all_prod.items():
                if p is not None and p[0] in by_norm and n not in inside:
                    raise ValueError(f"{c.name}: layer {n!r} reads the output of {p[0]!r} but is not quantized (skip="
                                     f"{c.skip!r}); folding the transformation's scale into {p[0]!r} would change its "
                                     f"input. Quantize it too or use let=False")
            lets = {}
            for pname, names in by_norm.items():
                norm, x_norm_in = prod[names[0]][1], prod[names[0]][2]
                obs = ActivationObserver(names[0], linear_weight(inside[names[0]]).shape[1], absmax=True)
                observe(block, [Group([names[0]], [omni[names[0]]])], [obs], q_in)
                w_absmax = torch.stack([omni[n].weight.abs().amax(dim=0) for n in names]).amax(dim=0)
                x_absmax = obs.absmax.to(w_absmax.device)
                s = (x_absmax.clamp(min=1e-5).pow(c.alpha) / w_absmax.clamp(min=1e-5).pow(1 - c.alpha)).clamp(min=1e-5)
                has_bias = isinstance(getattr(norm, "bias", None), torch.Tensor)
                let = _LET(s, shift=has_bias).to(s.device)
                # The fold must reproduce the hooked output: norm(x) / s == folded_norm(x) (e.g. a Gemma-style
                # (1 + weight) norm does not scale linearly with its weight).
                with torch.no_grad():
                    if has_bias:
                        let.shift.normal_(0, 0.1, generator=torch.Generator(s.device).manual_seed(0))
                    test = copy.deepcopy(norm)
                    _fold_into_norm(test, let)
                    want = let.on_norm_output(norm, None, norm(x_norm_in))
                    got = test(x_norm_in)
                    if has_bias:
                        let.shift.zero_()
                    bad = not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max().clamp(min=1e-30)))
                if bad:
                    raise ValueError(f"{c.name}: the learnable equivalent transformation cannot be folded into "
                                     f"{pname!r} ({type(norm).__name__}): dividing its weight by the scale does not "
                                     f"divide its output by it (max difference {float((got - want).abs().max()):.3g}). "
                                     f"Use let=False, or skip the layers reading it: {names}")
                lets[pname] = (norm, let, names)
            return lets

        def _check_equivalence(self, block, bname, omni, lets, hooks, call):
            """Without quantization the transformed block must compute the float block's function; if not, the
            norm's output is used elsewhere too (e.g. as a residual) and the scale cannot be folded. Each norm
            is checked alone, with its initial scale doubled (a scale far from 1)."""
            c = self.config
            live = {n: m.let for n, m in omni.items()}
            for h in hooks:
                h.remove()
            try:
                with torch.no_grad():
                    for m in omni.values():
                        m.mode, m.let = "float", None
                    ref = first_tensor(block(*call[0], **call[1])).float()
                    tol = 1e-4 * float(ref.abs().max().clamp(min=1e-30))
                    for pname, (norm, let, names) in lets.items():
                        saved = let.scale.detach().clone()
                        let.scale.mul_(2.0)
                        h = norm.register_forward_hook(let.on_norm_output)
                        for n in names:
                            omni[n].let = let
                        try:
                            out = first_tensor(block(*call[0], **call[1])).float()
                        finally:
                            h.remove()
                            let.scale.copy_(saved)
                            for n in names:
                                omni[n].let = None
                        err = float((out - ref).abs().max())
                        if not err <= tol:
                            raise ValueError(
                                f"{c.name}: the learnable equivalent transformation of block {bname!r} cannot be folded "
                                f"into {pname!r}: scaling its output and the linears {names} does not keep the block's "
                                f"function (max output change {err:.3g}), so that output is used elsewhere too (e.g. as "
                                f"a residual, as in post-norm blocks). Use let=False")
            finally:
                for n, m in omni.items():
                    m.mode, m.let = "learned", live[n]
                hooks[:] = [norm.register_forward_hook(let.on_norm_output) for norm, let, _ in lets.values()]


_register()
