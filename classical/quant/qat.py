"""The transform behind :class:`QAT` (LLM-QAT, Liu et al. 2023): fake-quantized training with a
straight-through estimator, distilled from the full-precision model, exported as QuantizedLinear."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..calibration import call_model, output_logits
from ..layers import linear_weight
from ..transform import LayerRecord, Transform, state_bytes, transform_for
from .configs import QAT
from .methods import _rtn_linear
from .primitives import fake_quantize, quantize_per_token

log = logging.getLogger(__name__)


class _FakeQuantLinear(nn.Module):
    """A float weight used through its quantize-dequantize (STE: gradient of the identity)."""

    def __init__(self, weight, bias, bits, group_size, act_bits):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self.bits, self.group_size, self.act_bits = bits, group_size, act_bits

    def forward(self, x):
        w = self.weight
        wq = w + (fake_quantize(w.detach(), self.bits, False, self.group_size) - w).detach()
        if self.act_bits is not None:
            x = x + (quantize_per_token(x.detach(), self.act_bits) - x).detach()
        return F.linear(x, wq.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


@torch.no_grad()
def generate_self_data(model: nn.Module, n: int, seq_len: int, vocab: int, *, generator: torch.Generator) -> list[torch.Tensor]:
    """LLM-QAT's data-free text: ``n`` ``(1, seq_len)`` sequences, the first token uniform over the
    vocabulary, each next one sampled from the model's distribution (no cache: the model is called on
    the growing prefix)."""
    dev = next(model.parameters()).device
    out = []
    for _ in range(n):
        x = torch.randint(0, vocab, (1, 1), generator=generator).to(dev)
        while x.shape[1] < seq_len:
            p = torch.softmax(output_logits(call_model(model, x))[:, -1].float(), dim=-1)
            x = torch.cat([x, torch.multinomial(p.cpu(), 1, generator=generator).to(dev)], dim=1)
        out.append(x)
    return out


@transform_for(QAT)
class _QAT(Transform):
    def run(self, model, calib, ctx):
        from ..blocks import linear_layers
        from ..granularity import check_divides

        c = self.config
        teacher = ctx.teacher  # the caller's model (or its copy in place), only read
        targets = dict(linear_layers(model, c.skip))
        if not targets:
            raise ValueError(f"{c.name}: the model has no linear layers to train outside skip={c.skip!r}")
        for name, m in targets.items():
            check_divides(c.granularity, linear_weight(m).shape[1], name)
        if c.data == "self":
            vocab = output_logits(call_model(teacher, torch.zeros(1, 1, dtype=torch.long,
                                                                 device=next(teacher.parameters()).device))).shape[-1]
            data = generate_self_data(teacher, c.n_samples, c.seq_len, vocab,
                                      generator=torch.Generator().manual_seed(ctx.seed))
        else:
            data = list(calib)
        need = -(-c.steps // c.max_epochs)
        if len(data) < need:
            raise ValueError(f"{c.name}: {c.steps} steps need at least {need} training sequences at max_epochs="
                             f"{c.max_epochs}, got {len(data)}; give more calibration items / n_samples, fewer "
                             f"steps, or a larger max_epochs")
        fq = {}
        for name, m in targets.items():
            w = linear_weight(m)
            fq[name] = _FakeQuantLinear(w, m.bias, c.bits, c.granularity.group_size(w.shape[1]), c.act_bits).to(w.device)
            model.set_submodule(name, fq[name])
        for p in model.parameters():
            p.requires_grad_(False)
        params = [m.weight for m in fq.values()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=0.0)
        losses = []
        try:
            with torch.enable_grad():
                for step in range(c.steps):
                    x = data[step % len(data)]
                    with torch.no_grad():
                        t = output_logits(call_model(teacher, x)).float()
                    s = output_logits(call_model(model, x)).float()
                    loss = F.kl_div(F.log_softmax(s, -1).flatten(0, -2), F.log_softmax(t, -1).flatten(0, -2),
                                    log_target=True, reduction="batchmean")
                    if not torch.isfinite(loss):
                        raise ValueError(f"{c.name}: non-finite distillation loss at step {step}; lower lr "
                                         f"(now {c.lr}) or check the model")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
        finally:
            for p in params:
                p.requires_grad_(False)
        log.info("%s: loss %.4g -> %.4g over %d steps", c.name, losses[0], losses[-1], len(losses))
        records = []
        for name, m in fq.items():
            w0 = linear_weight(targets[name]).detach().float()
            new = _rtn_linear(m.weight.detach(), c.bits, False, c.granularity, None if m.bias is None else m.bias.detach(),
                              c.name, act_bits=c.act_bits)
            model.set_submodule(name, new)
            eff = new.effective_weight().to(w0.device)
            records.append(LayerRecord(name, c.name, tuple(w0.shape), state_bytes(targets[name]), state_bytes(new),
                                       float((eff - w0).norm() / w0.norm().clamp(min=1e-30)), None,
                                       {"kd_loss_first": losses[0], "kd_loss_last": losses[-1]}))
        return records
