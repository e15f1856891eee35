"""Worker for tests/fit/test_text_distributed.py, launched by torchrun: fits the text case, writes JSON.

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_text_worker.py OUT_PREFIX
"""

import json
import os
import sys

import torch


def case():
    """(model, text, fit options); the test builds the same for one process."""
    from qlite import data
    from qlite.models import small_llama

    corpus = ("ROMEO: But, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n") * 20
    text = data.text("mem", seqlen=32, text_override=corpus)
    model = small_llama(text.vocab_size, hidden_size=32, n_layers=2, n_heads=4, intermediate_size=64, max_seq_len=64,
                        seed=0)
    return model, text, {"batch_size": 6, "max_steps": 8, "lr": 3e-3, "eval_every": 4}


def main():
    from qlite.training import fit

    prefix = sys.argv[1]
    torch.set_num_threads(1)
    model, text, opts = case()
    result = fit(model, text, device="cpu", checkpoint_dir=f"{prefix}.ckpt", **opts)
    state = {k: v.tolist() for k, v in result.model.state_dict().items()}
    out = {"rank": int(os.environ["RANK"]), "world_size": result.world_size, "loss": result.history["loss"],
           "val": result.history["val_perplexity"], "metrics": result.metrics, "test": result.eval_metrics,
           "state": state}
    with open(f"{prefix}.{os.environ['RANK']}.json", "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
