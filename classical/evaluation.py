"""The evaluation harness: one fixed protocol for perplexity, size and speed.

Perplexity follows the standard protocol of GPTQ / AWQ / SmoothQuant evaluations: the texts are joined
with blank lines (``"\\n\\n"``), tokenised once, cut into non-overlapping windows of ``seqlen`` tokens,
and ``ppl = exp(mean NLL)`` over every next-token prediction inside the windows. ``seqlen`` and the
number of windows are arguments and are recorded with the result.

Speed: prefill latency (one forward of a ``prompt_len`` prompt, batch 1), per-token decode latency with
the model's KV cache (greedy, ``decode_tokens`` steps) and the derived throughputs; median of
``repeats`` runs after one warm-up. Every figure carries ``kernel``: ``dense`` (plain float layers),
``real-kernel`` (torchao / bitsandbytes low-bit layers) or ``simulated`` (qlite's dequantize-on-the-fly
layers: their accuracy is exact for the stored format, their speed says nothing about a real kernel).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .calibration import output_logits
from .rng import forked_rng, seed_from
from .memory import tensor_bytes
from .transform import state_bytes

log = logging.getLogger(__name__)


def split_halves(text: str) -> tuple[str, str]:
    """First and second half of a text file's rows (calibration from the first, evaluation from the
    second, so the two never overlap)."""
    rows = text.split("\n")
    h = len(rows) // 2
    return "\n".join(rows[:h]), "\n".join(rows[h:])


def corpus_tokens(texts: str | list[str], tokenizer) -> torch.Tensor:
    """``(n,)`` token ids of ``texts`` joined with blank lines, tokenised once (no special tokens added)."""
    joined = texts if isinstance(texts, str) else "\n\n".join(texts)
    ids = tokenizer(joined, add_special_tokens=False, return_tensors="pt").input_ids
    return ids.reshape(-1)


def calibration_segments(tokens: torch.Tensor, n: int, seqlen: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` random ``(1, seqlen)`` windows of ``tokens`` (uniform start offsets, fixed seed), as GPTQ
    draws its calibration set."""
    if tokens.numel() <= seqlen:
        raise ValueError(f"need more than seqlen={seqlen} tokens for calibration, got {tokens.numel()}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - seqlen, (n,), generator=g)
    return [tokens[s : s + seqlen].reshape(1, seqlen).clone() for s in starts.tolist()]


def _device(model: nn.Module):
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, *, seqlen: int = 512, n_windows: int | None = None, batch_size: int = 1) -> dict:
    """Perplexity over non-overlapping ``seqlen`` windows of ``tokens`` (``n_windows=None``: all whole windows)."""
    if not isinstance(seqlen, int) or isinstance(seqlen, bool) or seqlen < 2:
        raise ValueError(f"seqlen must be an integer >= 2 (a window predicts its tokens after the first), got {seqlen!r}")
    tokens = tokens.reshape(-1)
    total = tokens.numel() // seqlen
    if total == 0:
        raise ValueError(f"{tokens.numel()} tokens do not fill one window of seqlen={seqlen}")
    n = total if n_windows is None else n_windows
    if not 1 <= n <= total:
        raise ValueError(f"n_windows={n_windows} but the tokens hold {total} windows of {seqlen}")
    dev = _device(model)
    windows = tokens[: n * seqlen].reshape(n, seqlen)
    nll_sum, count = 0.0, 0
    for b in range(0, n, batch_size):
        x = windows[b : b + batch_size].to(dev)
        logits = output_logits(model(x)).float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        nll_sum += float(nll)
        count += x[:, 1:].numel()
    mean = nll_sum / count
    return {"perplexity": math.exp(mean), "nll": mean, "seqlen": seqlen, "n_windows": n, "n_tokens": count,
            "windows_available": total}


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _cache_arg(model: nn.Module) -> str | None:
    """Name of the KV-cache argument of ``model.forward`` (``past_key_values``, or ``cache`` in
    transformers >= 5.2x), or ``None`` when the model takes no cache."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((n for n in ("past_key_values", "cache") if n in params), None)


def latency_runner(model: nn.Module, prompt: torch.Tensor, *, decode_tokens: int = 32, compiled: bool = False,
                   backend: str = "inductor"):
    """A function timing one prefill of ``prompt`` ``(1, prompt_len)`` and ``decode_tokens`` greedy decode
    steps: ``run(steps=decode_tokens) -> {"prefill_s", "decode_s_per_token", "tokens"}`` (the greedy ids: the
    prefill's next token, then one per decode step). Decoding reuses
    the model's KV cache when its forward takes one; otherwise each step recomputes the whole sequence.

    ``compiled=True`` runs each decode step through ``torch.compile(model.forward, dynamic=False,
    backend=backend)`` with transformers' ``StaticCache`` (fixed shapes, so one graph serves every step):
    Python's per-module overhead goes (on the 2-core CPU, a qlite int4 layer call costs ~34 us of which the
    kernel is ~21 us, 211 calls a SmolLM2 token), the kernels stay. The prefill runs eagerly into the same
    cache. The first decode step compiles (about a minute for SmolLM2 on that CPU): call ``run(1)`` untimed first.

    Raises:
        ValueError: ``compiled=True`` for a model whose forward takes no KV cache or that has no ``config``.
    """
    dev = _device(model)
    prompt = prompt.to(dev)
    cache = _cache_arg(model)
    P = prompt.shape[1]
    if compiled:
        if cache is None or getattr(model, "config", None) is None:
            raise ValueError(f"compiled=True needs a transformers causal LM whose forward takes a KV cache; "
                             f"{type(model).__name__} has {'no config' if cache else 'no cache argument'}: "
                             "time it with compiled=False")
        from transformers import StaticCache

        static = StaticCache(config=model.config, max_cache_len=P + decode_tokens + 1)
        step = torch.compile(model.forward, dynamic=False, backend=backend)

    @torch.no_grad()
    def run(steps: int = decode_tokens) -> dict:
        _sync(dev)
        t0 = time.perf_counter()
        if compiled:
            static.reset()
            out = model(prompt, use_cache=True, cache_position=torch.arange(P, device=dev), **{cache: static})
        else:
            out = model(prompt, use_cache=True) if cache else model(prompt)
        _sync(dev)
        pre = time.perf_counter() - t0
        nxt = output_logits(out)[:, -1:].argmax(-1)
        seq, past, toks = prompt, (getattr(out, cache) if cache and not compiled else None), [nxt]
        t0 = time.perf_counter()
        for i in range(steps):
            if compiled:
                out = step(nxt, use_cache=True, cache_position=torch.tensor([P + i], device=dev), **{cache: static})
            elif cache:
                out = model(nxt, use_cache=True, **{cache: past})
                past = getattr(out, cache)
            else:
                seq = torch.cat([seq, nxt], dim=1)
                out = model(seq)
            nxt = output_logits(out)[:, -1:].argmax(-1)
            toks.append(nxt)
        _sync(dev)
        dec = (time.perf_counter() - t0) / max(steps, 1)
        return {"prefill_s": pre, "decode_s_per_token": dec, "tokens": torch.cat(toks, dim=1)[0].tolist()}

    return run


@torch.no_grad()
def measure_latency(model: nn.Module, prompt: torch.Tensor, *, decode_tokens: int = 32, repeats: int = 3,
                    compiled: bool = False) -> dict:
    """Prefill and per-token decode latency for a ``(1, prompt_len)`` prompt: median of ``repeats`` runs
    of :func:`latency_runner` after an untimed prefill and decode step (the warm-up; with ``compiled=True``
    the compilation, excluded from the figures).
    Records ``kv_cache`` (whether decoding reused the model's cache) and ``compiled``."""
    run = latency_runner(model, prompt, decode_tokens=decode_tokens, compiled=compiled)
    run(1)  # warm-up
    samples = [run() for _ in range(repeats)]
    p = statistics.median(x["prefill_s"] for x in samples)
    d = statistics.median(x["decode_s_per_token"] for x in samples)
    return {
        "prefill_ms": 1e3 * p,
        "prefill_tokens_per_s": prompt.shape[1] / p,
        "decode_ms_per_token": 1e3 * d,
        "decode_tokens_per_s": 1.0 / d,
        "prompt_len": prompt.shape[1],
        "decode_tokens": decode_tokens,
        "repeats": repeats,
        "kv_cache": _cache_arg(model) is not None,
        "compiled": compiled,
    }


def kernel_label(model: nn.Module) -> str:
    """``simulated`` if any layer dequantizes on the fly, ``real-kernel`` if any layer runs a low-bit
    kernel (qlite's int4 / int8 CPU layouts, torchao, bitsandbytes), ``mixed`` for both, else ``dense``."""
    sim = real = False
    for m in model.modules():
        k = getattr(m, "kernel", None)
        if k == "simulated":
            sim = True
        elif k == "real-kernel":  # qlite's layers in a real kernel's layout
            real = True
        mod = type(m).__module__
        if mod.startswith("bitsandbytes"):
            real = True
        w = getattr(m, "weight", None)
        if w is not None and type(w).__module__.startswith("torchao"):
            real = True
    if sim and real:
        return "mixed (real-kernel + simulated)"
    return "simulated" if sim else "real-kernel" if real else "dense"


@dataclass
class EvalResult:
    """One evaluated model. Sizes in bytes as stored (state_dict, tied tensors once)."""

    label: str
    perplexity: float
    nll: float
    seqlen: int
    n_windows: int
    n_tokens: int
    bytes: int
    reference_bytes: int | None
    compression_ratio: float | None
    latency: dict
    kernel: str
    device: str
    seed: int  # what the forked RNG of the evaluation was seeded with
    seconds: float
    extra: dict = field(default_factory=dict)
    resident_bytes: int | None = None  # what the process holds for the model (RSS growth on CPU), if measured
    tensor_bytes: int | None = None  # every tensor the model holds, non-persistent buffers included

    def to_dict(self) -> dict:
        return asdict(self)

    def __repr__(self) -> str:
        ratio = "" if self.compression_ratio is None else f", x{self.compression_ratio:.2f}"
        return (f"EvalResult({self.label!r}: ppl {self.perplexity:.4g}, {self.bytes:,} bytes{ratio}, "
                f"speed {self.kernel}, {self.device})")

    def _repr_html_(self) -> str:
        """Notebook display: perplexity, bytes, ratio, latency and what the speed figures measure."""
        from qlite.display import table

        lat = self.latency or {}
        rows = [["perplexity", self.perplexity], ["nll (nats / token)", self.nll],
                ["tokens scored", f"{self.n_tokens:,} ({self.n_windows} windows of {self.seqlen})"],
                ["bytes", self.bytes], ["compression ratio", self.compression_ratio],
                ["prefill ms", lat.get("prefill_ms")], ["decode ms / token", lat.get("decode_ms_per_token")],
                ["decode tokens / s", lat.get("decode_tokens_per_s")], ["speed is", self.kernel],
                ["device", self.device]]
        return table(rows, ["", "value"], caption=f"evaluation: {self.label}")


def evaluate(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    label: str = "model",
    seqlen: int = 512,
    n_windows: int | None = None,
    batch_size: int = 1,
    prompt_len: int = 128,
    decode_tokens: int = 32,
    repeats: int = 3,
    reference_bytes: int | None = None,
    latency: bool = True,
    generator: torch.Generator | None = None,
    resident_bytes: int | None = None,
    compile_decode: bool = False,
) -> EvalResult:
    """Evaluate a causal LM with the fixed protocol (module docstring).

    Args:
        model: a causal LM returning logits ``(B, T, V)`` (or an object with ``.logits``).
        tokens: ``(n,)`` token ids of the evaluation text (see :func:`corpus_tokens`); the latency prompt is
            its first ``prompt_len`` tokens.
        reference_bytes: bytes of the uncompressed model, for the compression ratio.
        resident_bytes: the model's resident size as measured when it was built (e.g. by
            :func:`qlite.classical.memory.resident_delta`), reported beside ``bytes``.
        compile_decode: time the decode steps under ``torch.compile`` with a static KV cache
            (:func:`latency_runner`; compilation excluded); perplexity is always eager.
    Returns:
        :class:`EvalResult`.

    The windows are fixed and decoding is greedy; a model that samples in eval mode (a quantum layer
    with shots) draws from a fork of the global RNG seeded from ``generator`` (``None``: seed 0), so the
    caller's random state is untouched. The model's train / eval mode is restored.

    Example:
        >>> r = evaluate(model, tokens, label="fp32", seqlen=512, n_windows=40)  # doctest: +SKIP
    """
    seed = seed_from(generator)
    was = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        with forked_rng(seed, [_device(model)]):
            ppl = perplexity(model, tokens, seqlen=seqlen, n_windows=n_windows, batch_size=batch_size)
            lat = measure_latency(model, tokens[:prompt_len].reshape(1, -1), decode_tokens=decode_tokens,
                                  repeats=repeats, compiled=compile_decode) if latency else {}
    finally:
        model.train(was)
    size = state_bytes(model)
    return EvalResult(
        label=label,
        perplexity=ppl["perplexity"],
        nll=ppl["nll"],
        seqlen=seqlen,
        n_windows=ppl["n_windows"],
        n_tokens=ppl["n_tokens"],
        bytes=size,
        reference_bytes=reference_bytes,
        compression_ratio=None if reference_bytes is None else reference_bytes / size,
        latency=lat,
        kernel=kernel_label(model),
        device=str(_device(model)),
        seed=seed,
        seconds=time.perf_counter() - t0,
        resident_bytes=resident_bytes,
        tensor_bytes=tensor_bytes(model),
    )


def machine_info() -> dict:
    """Where the figures were measured: host, CPU model and cores, accelerator, versions, date.

    Kept only for ``experiments/bench_lm.py`` and ``experiments/hybrid_lm.py`` until they use
    ``experiments/study_io.machine_info``, the one machine record of every study (issue 15)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for pkg in ("transformers", "torchao", "bitsandbytes"):
        try:
            import importlib.metadata as md

            info[pkg] = md.version(pkg)
        except Exception:
            info[pkg] = None
    return info


def results_markdown(rows: list[dict], *, reference: str | None = None) -> str:
    """A Markdown table of evaluation rows (dicts of :meth:`EvalResult.to_dict`)."""
    ref = next((r for r in rows if r["label"] == reference), None)
    head = ("| method | ppl | Δppl vs ref | bytes | resident MB | ratio | prefill ms | decode ms/tok | decode tok/s "
            "| speed is |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        d = "" if ref is None else f"{r['perplexity'] - ref['perplexity']:+.3f}"
        lat = r.get("latency") or {}
        ratio = "" if r.get("compression_ratio") is None else f"{r['compression_ratio']:.2f}"
        rss = "" if r.get("resident_bytes") is None else f"{r['resident_bytes'] / 1e6:.1f}"
        lines.append(
            f"| {r['label']} | {r['perplexity']:.3f} | {d} | {r['bytes']:,} | {rss} | {ratio} | "
            f"{lat.get('prefill_ms', float('nan')):.1f} | {lat.get('decode_ms_per_token', float('nan')):.1f} | "
            f"{lat.get('decode_tokens_per_s', float('nan')):.1f} | {r['kernel']} |"
        )
    return "\n".join(lines)
