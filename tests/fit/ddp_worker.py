"""Worker for tests/fit/test_distributed.py, launched by torchrun: fits one case, writes JSON.

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_worker.py OUT_PREFIX CASE...
Each case is a separate fit (each creates and destroys its process group); results go to
``OUT_PREFIX.<case>.<rank>.json``.
"""

import json
import os
import sys

import torch


def case(name):
    """(model, signal, fit options) of a named case; the test builds the same for one process."""
    from qlite import data
    from qlite.models import ModelSpec

    signal = data.image("camera", size=16)
    if name == "qiren":
        return ModelSpec("qiren", hidden_features=4).build(2, 1, seed=0), signal, {"epochs": 12, "lr": 0.03}
    if name == "minibatch":
        opts = {"epochs": 12, "lr": 0.01, "batch_size": 64, "schedule": "cosine"}
        return ModelSpec("relu", hidden_features=8).build(2, 1, seed=0), signal, opts
    raise ValueError(name)


def main():
    from qlite.training import fit, predict

    prefix, names = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    for name in names:
        model, signal, opts = case(name)
        result = fit(model, signal, device="cpu", **opts)
        pred = predict(result.model, signal.coords)
        state = {k: v.tolist() for k, v in result.model.state_dict().items()}
        out = {"rank": int(os.environ["RANK"]), "world_size": result.world_size, "loss": result.history["loss"],
               "metrics": result.metrics, "prediction": pred[:, 0].tolist(), "state": state}
        with open(f"{prefix}.{name}.{os.environ['RANK']}.json", "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
