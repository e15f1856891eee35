"""Randomness passed in, never set globally: a generator in, a forked and seeded RNG for the duration
of a call, the caller's random state unchanged after it.

Modules such as ``nn.Dropout`` (or a quantum layer that samples shots) draw from the global RNG and
take no generator, so a call that runs a model cannot hand them one. Instead it forks the global RNG
(:func:`torch.random.fork_rng`), seeds the fork from the caller's generator, and the fork is thrown
away on exit.
"""

from __future__ import annotations

import contextlib

import torch


def seed_from(generator: torch.Generator | None) -> int:
    """A seed drawn from ``generator`` (``None``: 0, so calls without one stay reproducible)."""
    if generator is None:
        return 0
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), got "
                        f"{type(generator).__name__}")
    return int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))


@contextlib.contextmanager
def forked_rng(seed: int, devices=()):
    """Run the block on a copy of the global RNG (CPU and the CUDA ``devices`` given), seeded with
    ``seed``; the caller's RNG state is restored on exit."""
    cuda = sorted({torch.device(d).index or 0 for d in devices if torch.device(d).type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: it would reseed every CUDA device
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield
