"""qlite.lm: hybrid lightweight language models.

Quantum modules inside any ``nn.Module`` (Hugging Face Llama / GPT-2 / BERT, plain ``nn.Sequential``),
each a frozen config plus the module it builds, injected by name (peft's ``get_peft_model`` shape):

* per-token circuits: :class:`QuantumAdapterConfig` (beside a Linear, zero-initialised output) and
  :class:`QuantumFFNConfig` (in place of a block's MLP);
* circuit-generated weights: :class:`QuantumLoRAConfig` (Quantum-Train / QPA; merges into plain weights),
  with its ablation controls (``features="free"`` / ``"random"``);
* unitary adapters: :class:`UnitaryAdapterConfig` (Quantum-PEFT; merges).

``inject`` / ``merge_and_unload``, ``parameter_ledger`` (circuit angles, adapter weights, bytes),
``save_adapters`` / ``load_adapters`` (adapter weights only, base fingerprint checked),
``adapter_spectrum`` (the frequencies an adapter's circuit expresses in its layer's inputs).
Importing this package does not import transformers.

Example:
    >>> from torch import nn
    >>> from qlite.lm import inject, QuantumLoRAConfig, merge_and_unload
    >>> net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32))
    >>> hybrid = inject(net, QuantumLoRAConfig(r=2), target_modules=["0", "2"])
    >>> plain = merge_and_unload(hybrid)
    >>> type(plain[0]).__name__
    'Linear'
"""

from .adapter import QuantumAdapter
from .configs import (AdapterConfig, QuantumAdapterConfig, QuantumFFNConfig, QuantumLoRAConfig, UnitaryAdapterConfig,
                      config_from_dict, config_from_json)
from .ffn import QuantumFFN
from .generated import QuantumLoRA, WeightGenerator
from .inject import adapter_modules, adapter_patterns, find_targets, inject, merge_and_unload
from .io import base_fingerprint, load_adapters, read_adapter_index, save_adapters
from .ledger import Ledger, parameter_ledger
from .unitary import UnitaryAdapter


def __getattr__(name):
    if name in ("adapter_spectrum", "AdapterSpectrum"):
        from . import spectrum as _s

        return getattr(_s, name)
    raise AttributeError(f"module 'qlite.lm' has no attribute {name!r}")


__all__ = [
    "AdapterConfig", "QuantumAdapterConfig", "QuantumFFNConfig", "QuantumLoRAConfig", "UnitaryAdapterConfig",
    "config_from_dict", "config_from_json", "QuantumAdapter", "QuantumFFN", "QuantumLoRA", "UnitaryAdapter",
    "WeightGenerator", "inject", "merge_and_unload", "adapter_modules", "adapter_patterns", "find_targets",
    "parameter_ledger", "Ledger", "save_adapters", "load_adapters", "read_adapter_index", "base_fingerprint",
    "adapter_spectrum", "AdapterSpectrum",
]
