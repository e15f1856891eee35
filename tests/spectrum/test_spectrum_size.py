"""spectrum_size against brute-force enumeration of the sums sum_i w_i k_i, |k_i| <= L."""

import itertools
import math
import random

import pytest

from qlite.spectrum import spectrum_size


def brute(weights, L, decimals=8):
    sums = {round(sum(w * k for w, k in zip(weights, ks)), decimals) + 0.0
            for ks in itertools.product(range(-L, L + 1), repeat=len(weights))}
    return len(sums)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("L", [0, 1, 2, 3])
def test_named_scalings_match_brute_force(d, L):
    assert spectrum_size(d, L, "unit") == brute([1] * d, L) == 2 * d * L + 1
    assert spectrum_size(d, L, "ternary") == brute([3**i for i in range(d)], L) == (3**d - 1) * L + 1
    # rationally independent weights reach the bound (2L+1)^d
    irrational = [math.sqrt(p) for p in (2, 3, 5, 7)[:d]]
    assert spectrum_size(d, L, "bound") == brute(irrational, L) == (2 * L + 1) ** d


@pytest.mark.parametrize("seed", range(6))
def test_explicit_weights_are_counted_exactly(seed):
    rng = random.Random(seed)
    d, L = rng.randint(1, 4), rng.randint(1, 3)
    ints = [rng.randint(-4, 4) for _ in range(d)]  # zeros, negatives and repeats make coincidences
    assert spectrum_size(d, L, ints) == brute(ints, L)
    halves = [rng.choice([0.5, 1.0, 1.5, math.pi]) for _ in range(d)]
    assert spectrum_size(d, L, halves) == brute(halves, L)
    assert spectrum_size(d, L, [float(w) for w in ints]) == brute(ints, L)


def test_bad_input():
    with pytest.raises(ValueError, match="layers must be an integer >= 0, got -1"):
        spectrum_size(2, -1)
    with pytest.raises(ValueError, match="n_qubits must be an integer >= 1, got 0"):
        spectrum_size(0, 1)
    with pytest.raises(ValueError, match="n_qubits must be an integer >= 1, got True"):
        spectrum_size(True, 1)
    with pytest.raises(ValueError, match="unknown scaling 'binary'"):
        spectrum_size(2, 1, "binary")
    with pytest.raises(ValueError, match="3 weights for n_qubits=2"):
        spectrum_size(2, 1, [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        spectrum_size(2, 1, [1.0, float("nan")])
    with pytest.raises(ValueError, match="max_size=100.*scaling='bound'"):
        spectrum_size(4, 3, [math.sqrt(p) for p in (2, 3, 5, 7)], max_size=100)
    # integer weights: a common factor does not change the count; a huge range is refused, not allocated
    assert spectrum_size(2, 2, [2**40, 2**41]) == spectrum_size(2, 2, [1, 2])
    with pytest.raises(ValueError, match="range of .* values, more than max_size"):
        spectrum_size(2, 2, [1, 2**40])
    with pytest.raises(TypeError, match="scaling must be"):
        spectrum_size(1, 1, 1.5)
