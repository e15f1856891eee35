"""Round trips of SmolLM2-135M through the serving formats (issue 14, item 4): qlite compresses, exports
(GGUF Q8_0 / Q4_0 / Q4_1 through the gguf package, compressed-tensors pack-quantized through its
library), the file is read back by another library (transformers' GGUF loader; compressed-tensors'
decompressor) and its perplexity on the same windows is compared with qlite's model of the same codes
(simulated layers: the stored format's exact arithmetic). Writes results/serving_export.{md,json}.

    python experiments/serving_export.py --windows 4 --calib 8       # ~6 minutes on the 2-core CPU
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from qlite.classical import GPTQ, RTN, compress
from qlite.classical.evaluation import calibration_segments, corpus_tokens, perplexity, split_halves
from qlite.classical.gguf_export import export_gguf
from qlite.classical.models import load_causal_lm, smollm2_gguf_path
from qlite.classical.serving import export_compressed_tensors, load_compressed_tensors
from qlite.paths import data_file
from study_io import machine_info, machine_line, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = load_causal_lm()
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    ev = corpus_tokens(second, tok)
    calib = calibration_segments(corpus_tokens(first, tok), a.calib, 512, 0)
    probe = ev[:512].reshape(1, -1)
    cases = [
        ("RTN W8 g32 -> GGUF Q8_0", [RTN(8, group_size=32)], "gguf"),
        ("RTN W4 g32 sym -> GGUF Q4_0", [RTN(4, group_size=32)], "gguf"),
        ("RTN W4 g32 asym -> GGUF Q4_1", [RTN(4, group_size=32, symmetric=False)], "gguf"),
        ("GPTQ W4 g64 static groups -> compressed-tensors", [GPTQ(4, group_size=64, static_groups=True)], "ct"),
        ("RTN W4 g64 sym -> compressed-tensors", [RTN(4, group_size=64)], "ct"),
    ]
    rows = []
    with torch.no_grad():
        fp = perplexity(model, ev, seqlen=512, n_windows=a.windows)["perplexity"]
        for label, recipe, fmt in cases:
            t0 = time.perf_counter()
            q = compress(model, recipe, calib if recipe[0].requires_calibration else None, kernels=False).model
            ours = perplexity(q, ev, seqlen=512, n_windows=a.windows)["perplexity"]
            with tempfile.TemporaryDirectory() as d:
                if fmt == "gguf":
                    export_gguf(q, Path(d) / "m.gguf", template=smollm2_gguf_path())
                    size = (Path(d) / "m.gguf").stat().st_size
                    back, _ = load_causal_lm(d, gguf_file="m.gguf")
                    reader = "transformers' GGUF loader (gguf dequantize)"
                else:
                    export_compressed_tensors(q, Path(d) / "ct")
                    size = (Path(d) / "ct" / "model.safetensors").stat().st_size
                    back = copy.deepcopy(model)
                    missing = back.load_state_dict(load_compressed_tensors(Path(d) / "ct"), strict=False)
                    assert not [k for k in missing.missing_keys if k != "lm_head.weight"], missing
                    reader = "compressed-tensors PackedQuantizationCompressor.decompress"
            theirs = perplexity(back, ev, seqlen=512, n_windows=a.windows)["perplexity"]
            diff = float((q(probe).logits - back(probe).logits).abs().max())
            rows.append({"label": label, "format": fmt, "reader": reader, "file_bytes": size, "ppl_qlite": ours,
                         "ppl_read_back": theirs, "max_logit_diff": diff, "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
            del q, back
    m = machine_info("cpu")
    L = ["# SmolLM2-135M through serving formats", "", machine_line(m) + f"; load average {m['load_average']}.", "",
         f"Perplexity on {a.windows} windows of 512 tokens of WikiText-2's second half (FP32: {fp:.3f}); GPTQ "
         f"calibrated on {a.calib} x 512 tokens of the first half. 'qlite' is the compressed model with simulated "
         "layers (the codes' exact arithmetic); 'read back' is the exported file loaded by the other library. "
         "Q4_1 stores m = -d*z in float16, so its weights move by up to |m| * 2**-11.", "",
         "| export | file MB | ppl qlite | ppl read back | max abs logit diff (512 tokens) | read back by |", "|---|---:|---:|---:|---:|---|"]
    L += [f"| {r['label']} | {r['file_bytes'] / 1e6:.1f} | {r['ppl_qlite']:.4f} | {r['ppl_read_back']:.4f} | "
          f"{r['max_logit_diff']:.2e} | {r['reader']} |" for r in rows]
    L += ["", "llama.cpp itself (llama-cpp-python builds from source here) was not run: the GGUF files are checked by "
          "the gguf package and transformers' loader only."]
    write_results(a.out, "serving_export", "\n".join(L), {"machine": m, "fp32_ppl": fp, "rows": rows,
                                                           "windows": a.windows, "calib": a.calib})


if __name__ == "__main__":
    main()
