"""Issue 16: GPTQ static vs dynamic act-order groups, layer by layer on SmolLM2 Hessians (results/gptq_group_order.md)."""
import torch, time, json
torch.set_num_threads(1)
from qlite.classical.models import load_causal_lm
from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
from qlite.classical.calibration import ActivationObserver
from qlite.classical.quant.gptq import gptq_quantize
from qlite.classical.transform import output_rel_error
from qlite.paths import data_file
model, tok = load_causal_lm()
first, _ = split_halves(data_file("wikitext2_test.txt").read_text())
segs = calibration_segments(corpus_tokens(first, tok), 4, 512, 0)
names = [f"model.layers.{b}.{l}" for b in (0, 10, 20, 29) for l in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")]
obs = {}
hs = []
for n in names:
    m = model.get_submodule(n); obs[n] = ActivationObserver(n, m.in_features, hessian=True)
    hs.append(m.register_forward_pre_hook(lambda _m, a, o=obs[n]: o.update(a[0])))
with torch.no_grad():
    for x in segs: model(x)
res = {}
for gs in (64, 128):
    for n in names:
        W = model.get_submodule(n).weight.detach().float(); H = obs[n].H
        row = {}
        for v, kw in [("static", dict(static_groups=True)), ("dyn-updated", {}), ("dyn-stale", dict(group_params_from="stale")), ("dyn-original", dict(group_params_from="original"))]:
            for bits in (3, 4):
                r = gptq_quantize(W, H, bits=bits, group_size=gs, symmetric=False, act_order=True, **kw)
                row[f"{v} W{bits}"] = output_rel_error(W, r["dequantized"], H)
        res[f"g{gs} {n}"] = row
        print(gs, n, {k: f"{v:.5f}" for k, v in row.items()}, flush=True)
json.dump(res, open(__import__("pathlib").Path(__file__).parent / "results" / "gptq_group_order.json", "w"), indent=1)
