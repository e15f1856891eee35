"""Knowledge distillation on text: forward KL, reverse KL (the MiniLLM choice) or a mix, teacher = the
uncompressed model, student = any compressed model (GQA-converted, pruned, factorised, LoRA-wrapped).

For next-token distributions ``p`` (teacher) and ``q_theta`` (student) at each position of the text:

* forward KL ``KL(p || q) = sum_v p_v (log p_v - log q_v)``: mean-seeking; the classic KD objective
  (Hinton et al. 2015; with temperature ``tau`` both distributions are ``softmax(z / tau)`` and the loss
  is multiplied by ``tau^2`` so gradient magnitudes do not shrink with ``tau``);
* reverse KL ``KL(q || p) = sum_v q_v (log q_v - log p_v)``: mode-seeking, the objective of MiniLLM
  (Gu et al. 2024, Eq. 1), which keeps a small student from spreading mass over the teacher's long tail;
* ``mixed``: ``alpha * forward + (1 - alpha) * reverse``.

Where MiniLLM differs: it optimises the *sequence-level* reverse KL with a policy gradient on sequences
sampled from the student. Here the reverse KL is computed token by token on given text (teacher
forcing), its exact gradient at each prefix; no sampling, no policy-gradient variance reduction. That is
the usual recovery setting after compression (the student starts near the teacher), and is stated here
so that nobody reads it as a MiniLLM reproduction.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import skipped
from .calibration import call_model, output_logits
from .rng import forked_rng, seed_from

log = logging.getLogger(__name__)

LOSSES = ("forward", "reverse", "mixed", "lm")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, kind: str = "forward", alpha: float = 0.5,
            temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions of the chosen divergence between teacher and student next-token distributions.

    Args:
        student_logits, teacher_logits: ``(..., vocab)``, same shape.
        kind: ``"forward"`` (KL(p||q)), ``"reverse"`` (KL(q||p)) or ``"mixed"`` (``alpha`` forward + ``1 - alpha`` reverse).
        temperature: softens both distributions; the result is scaled by ``temperature**2``.
        mask: optional ``(...)`` bool / 0-1 weights of the positions that count.
    Returns:
        a scalar tensor (differentiable w.r.t. the student logits; the teacher's are detached).
    """
    if kind not in ("forward", "reverse", "mixed"):
        raise ValueError(f"kind must be 'forward', 'reverse' or 'mixed', got {kind!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape (same tokenizer / vocabulary needed)")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    lq = F.log_softmax(student_logits.float() / temperature, dim=-1)
    lp = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    parts = []
    if kind in ("forward", "mixed"):
        parts.append((alpha if kind == "mixed" else 1.0, (lp.exp() * (lp - lq)).sum(-1)))
    if kind in ("reverse", "mixed"):
        parts.append((1 - alpha if kind == "mixed" else 1.0, (lq.exp() * (lq - lp)).sum(-1)))
    per_pos = sum(w * p for w, p in parts)  # (...)
    if mask is not None:
        m = mask.to(per_pos.dtype)
        out = (per_pos * m).sum() / m.sum().clamp(min=1)
    else:
        out = per_pos.mean()
    return out * temperature**2


def lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of ``(B, T, V)`` logits on ``(B, T)`` ids."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def _ids(x) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict):
        return x.get("input_ids")
    return None


def train_student(
    student: nn.Module,
    batches: list,
    *,
    teacher: nn.Module | None = None,
    loss: str = "forward",
    alpha: float = 0.5,
    temperature: float = 1.0,
    steps: int = 100,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    params: Iterable[nn.Parameter] | None = None,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ``student`` in place on ``batches`` (model inputs, cycled) for ``steps`` AdamW steps.

    ``loss`` is a :func:`kd_loss` kind against ``teacher`` (frozen, eval mode) or ``"lm"`` (next-token
    cross-entropy on the batch's own tokens, no teacher). ``params``: what to train (default: every
    parameter that requires grad). ``generator`` drives the randomness inside the student's forward
    (dropout, e.g. LoRA's): the training runs on a forked RNG seeded from it, so the process's global
    random state is the same after the call as before (``None``: seed 0, reproducible). Returns the
    loss of every step.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss != "lm" and teacher is None:
        raise ValueError(f"loss={loss!r} needs a teacher model (the uncompressed one); or use loss='lm'")
    if not batches:
        raise ValueError("batches is empty: give a list of model inputs, e.g. (1, seqlen) token-id tensors")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    params = [p for p in (student.parameters() if params is None else params) if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    seed = seed_from(generator)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    was, teacher_was = student.training, None if teacher is None else teacher.training
    student.train()
    if teacher is not None:
        teacher.eval()
    history = []
    t0 = time.perf_counter()
    try:
        # dropout (LoRA's, the model's) draws from the global RNG: run on a seeded fork of it
        with forked_rng(seed, {p.device for p in params}), torch.enable_grad():
            for step in range(steps):
                x = batches[step % len(batches)]
                s_logits = output_logits(call_model(student, x))
                if loss == "lm":
                    ids = _ids(x)
                    if ids is None:
                        raise ValueError("loss='lm' needs token-id inputs (tensors or dicts with input_ids)")
                    value = lm_loss(s_logits, ids)
                else:
                    with torch.no_grad():
                        t_logits = output_logits(call_model(teacher, x))
                    value = kd_loss(s_logits, t_logits, kind=loss, alpha=alpha, temperature=temperature)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                history.append(float(value.detach()))
                if step % 10 == 0 or step == steps - 1:
                    log.info("distill step %d/%d: %s loss %.4f (%.1fs)", step + 1, steps, loss, history[-1], time.perf_counter() - t0)
    finally:
        # the last step's gradients would stay on the parameters: a second copy of every trained tensor
        # (a healed model was resident at twice its bytes, issue 17)
        opt.zero_grad(set_to_none=True)
        student.train(was)
        if teacher is not None:
            teacher.train(teacher_was)  # the caller's teacher leaves in the mode it came in
    return history


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: list,
    *,
    loss: str = "forward",
    alpha: float = 0.5,
    temperature: float = 1.0,
    steps: int = 100,
    lr: float = 1e-4,
    trainable: tuple[str, ...] | None = None,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[nn.Module, list[float]]:
    """Recover a compressed ``student`` by distilling ``teacher`` (the uncompressed model) on text.

    Args:
        batches: model inputs (``(1, seqlen)`` token-id tensors or dicts), cycled over ``steps``.
        loss: ``"forward"``, ``"reverse"`` (MiniLLM's choice, token level: see the module docstring),
            ``"mixed"`` or ``"lm"`` (plain next-token loss, the teacher unused).
        trainable: ``fnmatch`` patterns of parameter names to train (e.g. ``("*.k_proj.*", "*.v_proj.*")``);
            ``None`` trains every parameter.
        inplace: train ``student`` itself; otherwise a copy (``student`` untouched).
        generator: randomness of the training (see :func:`train_student`); the global RNG is untouched.
    Returns:
        ``(trained student, per-step losses)``.

    Example:
        >>> mqa = convert_gqa(model, 1)                                      # doctest: +SKIP
        >>> mqa, hist = distill(mqa, model, calib, loss="reverse", steps=50)  # doctest: +SKIP
    """
    s = student if inplace else copy.deepcopy(student)
    if trainable is None:
        params = [p for p in s.parameters()]
        for p in params:
            p.requires_grad_(True)
    else:
        params = []
        for n, p in s.named_parameters():
            on = skipped(n, tuple(trainable))
            p.requires_grad_(on)
            if on:
                params.append(p)
        if not params:
            raise ValueError(f"no parameter name matches trainable={trainable!r}")
    hist = train_student(s, batches, teacher=teacher, loss=loss, alpha=alpha, temperature=temperature, steps=steps,
                         lr=lr, params=params, generator=generator)
    s.eval()
    return s, hist
