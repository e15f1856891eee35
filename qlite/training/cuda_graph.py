"""The signal loop's training step replayed from a CUDA graph (``FitConfig.cuda_graph``).

A QIREN step on a GPU is a few hundred small kernels; launched one by one from Python it costs
10-25 ms where the GPU work takes 2 ms (issue 13, one H200: 24.9 ms per epoch on a 32 x 32 image
against a graphed step of 1.93 ms). Recorded once as a CUDA graph and replayed, the step costs one
launch. This is the recipe of the PyTorch documentation ("whole network capture", see
``torch.cuda.graphs``) applied to :func:`qlite.fit`'s step:

* the first :data:`WARMUP_STEPS` steps run eagerly on a side stream (lazy initialisation, Triton
  compilation, the optimiser's state), and they are real training steps, not thrown away;
* the next step is captured: forward, MSE, backward, Adam (``capturable=True``, the learning rate a
  device tensor so that a schedule changes it between replays) and the epoch's float64 sum of
  squared errors, all on static tensors (the coordinates themselves for a full batch; an index
  buffer into them for mini-batches of one size);
* every later step is one ``replay()``. The loop reads the loss once per epoch, as it always has.

Steps that cannot be captured are found before training where that can be known
(:func:`graph_blockers`) and otherwise by the capture itself; ``cuda_graph="auto"`` then trains
eagerly and logs the reason in one line, ``cuda_graph=True`` refuses with it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

WARMUP_STEPS = 3  # eager steps before the capture (PyTorch's docs use 3; Triton compiles on the first)


def graph_blockers(model: nn.Module, dev: torch.device, ctx, n: int, batch_size: int | None) -> list[str]:
    """Why the training step of ``model`` on ``dev`` cannot be captured, known before training
    (empty: try). ``ctx``: the distributed context or ``None``; ``n`` points in batches of
    ``batch_size`` (``None``: full batch), split as :func:`qlite.fit` splits them."""
    reasons = []
    if dev.type != "cuda":
        reasons.append(f"the model trains on {dev.type} (CUDA graphs need a CUDA device)")
    if ctx is not None:
        reasons.append("distributed data parallel (torchrun) steps run eagerly")
    if batch_size is not None and batch_size < n:
        k = max(1, n // batch_size)
        if n % k:
            reasons.append(f"the {n} points split into {k} batches of {n // k} or {n // k + 1} points, and a graph "
                           f"replays one shape; choose a batch_size whose batch count divides {n} (e.g. "
                           f"{_even_batch(n, batch_size)}) or batch_size=None")
    if type(model).__name__ == "OptimizedModule":  # torch.compile's wrapper (not imported: torch._dynamo is slow)
        reasons.append("the model is torch.compile'd (use torch.compile(mode='reduce-overhead') for its own graphs)")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats and m.momentum is None:
            reasons.append(f"BatchNorm {name or 'model'} has momentum=None (its cumulative average reads a counter "
                           f"on the host every step)")
        if getattr(m, "check_finite", None) is True:
            reasons.append(f"{type(m).__name__} {name or 'model'} has check_finite=True (a host read of its inputs "
                           f"every call)")
    if any(p.requires_grad and p.device != dev for p in model.parameters()):
        reasons.append("some trainable parameters are not on the training device")
    return reasons


def _even_batch(n: int, batch_size: int) -> int:
    """The nearest batch size to ``batch_size`` whose batches all have one size."""
    k = max(1, n // batch_size)
    divisors = [d for d in range(1, n + 1) if n % d == 0 and n // d >= 2]
    best = min(divisors, key=lambda d: (abs(n // d - batch_size), d))
    return n // best


def make_capturable(opt: torch.optim.Optimizer, dev: torch.device) -> None:
    """Switch a ``torch.optim.Adam`` (possibly with state loaded from a checkpoint) to
    ``capturable=True`` with a device-tensor learning rate: its step then does no host work and a
    schedule writes the rate into that tensor between replays (``set_lr``)."""
    if not isinstance(opt, torch.optim.Adam):
        raise TypeError(f"a graphed step needs torch.optim.Adam, got {type(opt).__name__}")
    for group in opt.param_groups:
        group["capturable"] = True
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=dev)
        for p in group["params"]:
            state = opt.state.get(p)
            if state and "step" in state:  # capturable Adam keeps its step count on the device
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of every group: a float, or written into the device tensor of a capturable
    optimiser (an asynchronous fill, no host synchronisation)."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def checkpoint_state(opt: torch.optim.Optimizer) -> dict:
    """``opt.state_dict()`` in the form an eager optimiser loads (float learning rate,
    ``capturable=False``), so a checkpoint written by a graphed run resumes anywhere."""
    state = opt.state_dict()
    groups = []
    for g in state["param_groups"]:
        g = dict(g)
        if isinstance(g.get("lr"), torch.Tensor):
            g["lr"] = float(g["lr"])
        if g.get("capturable"):
            g["capturable"] = False
        groups.append(g)
    return {"state": state["state"], "param_groups": groups}


class GraphedSteps:
    """Training steps of the signal loop, eager for the first :data:`WARMUP_STEPS` (on a side
    stream), then one capture, then replays. ``step_fn(idx)`` must do one whole step (forward,
    loss, ``backward``, ``opt.step()``) for the points ``idx`` (``None``: all) and return the
    detached sum of squared errors; this class adds it in float64 to :attr:`acc`.

    ``strict``: a failed capture raises (``cuda_graph=True``) instead of continuing eagerly."""

    def __init__(self, step_fn, opt: torch.optim.Optimizer, dev: torch.device, *, batch: int | None, strict: bool):
        self.step_fn, self.opt, self.dev, self.strict = step_fn, opt, dev, strict
        self.acc = torch.zeros((), dtype=torch.float64, device=dev)
        self.idx = None if batch is None else torch.zeros(batch, dtype=torch.long, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.done = 0
        self.failed: str | None = None
        self.side = torch.cuda.Stream(dev)

    @property
    def mode(self) -> str:
        if self.failed is not None:
            return f"eager ({self.failed})"
        return "cuda-graph" if self.graph is not None else "eager (warm-up only: too few steps to capture)"

    def _body(self, idx):
        self.acc += self.step_fn(idx).double()

    def __call__(self, idx: torch.Tensor | None) -> None:
        """One step on the points ``idx`` (a device tensor; ``None``: full batch)."""
        if self.idx is not None:
            self.idx.copy_(idx)  # device to device: no host synchronisation
        if self.graph is not None:
            self.graph.replay()
            return
        if self.failed is not None:
            self.opt.zero_grad(set_to_none=True)
            self._body(self.idx)
            return
        if self.done < WARMUP_STEPS:
            self.side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(self.side):
                self._body(self.idx)
            torch.cuda.current_stream(self.dev).wait_stream(self.side)
            self.done += 1
            return
        self._capture()
        if self.graph is not None:
            self.graph.replay()  # the capture recorded this step without running it
        else:
            self.opt.zero_grad(set_to_none=True)
            self._body(self.idx)

    def _capture(self) -> None:
        torch.cuda.synchronize(self.dev)
        graph = torch.cuda.CUDAGraph()
        # Gradients are allocated inside the graph's pool and rewritten (not accumulated) on replay.
        self.opt.zero_grad(set_to_none=True)
        stream = torch.cuda.Stream(self.dev)
        stream.wait_stream(torch.cuda.current_stream(self.dev))
        try:
            # Not torch.cuda.graph(): when its capture_end raises, it leaves the capture stream current.
            with torch.cuda.stream(stream):
                graph.capture_begin()
                try:
                    self._body(self.idx)
                finally:
                    graph.capture_end()
        except Exception as err:  # noqa: BLE001 - any failure of the capture means: run eagerly (or refuse)
            reason = f"the step could not be captured as a CUDA graph: {type(err).__name__}: {_first_line(err)}"
            del graph
            self.opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.dev)
            if self.strict:
                raise ValueError(f"cuda_graph=True: {reason}; pass cuda_graph='auto' to train eagerly instead "
                                 f"(or False)") from err
            self.failed = reason
            log.warning("qlite.fit: %s; training continues eagerly", reason)
            return
        torch.cuda.current_stream(self.dev).wait_stream(stream)
        self.graph = graph
        log.info("qlite.fit: training step captured as a CUDA graph after %d eager steps", self.done)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else "(no message)"
