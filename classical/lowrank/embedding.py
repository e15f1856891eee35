"""Tensorised embedding tables: tensor-train (TT-matrix) and Tucker factorisations through tensorly.

The ``(V, D)`` table is padded with zero rows to ``V' = v_1 ... v_K >= V``, ``D = d_1 ... d_K`` is
factored exactly, and the table is seen as the order-``2K`` tensor ``E[i_1..i_K, j_1..j_K]`` (row-major
digits of the token id and of the feature index).

* ``"tt"``: the TT-matrix format of TT-embeddings (Khrulkov et al. 2019): cores ``G_k (r_{k-1}, v_k,
  d_k, r_k)``; a row is the chain product ``G_1[:, i_1] ... G_K[:, i_K]``. This is the tensorised
  embedding in the spirit of MorphTE (Gan et al. 2022): each word is a tensor product of small
  sub-embeddings picked by its sub-indices. MorphTE picks them by *morphemes* from a morphological
  segmenter; here the sub-indices are the digits of the token id (no segmenter ships with qlite), which
  is TT-embeddings' choice.
* ``"tucker"``: a core ``(rv_1..rv_K, rd_1..rd_K)`` and factor matrices per mode; a row contracts the
  core with the rows ``A_k[i_k]`` of the vocabulary factors, then with the feature factors.

Both are initialised from the pretrained table by tensorly's decompositions (TT-SVD, HOSVD + HOOI) and
stay trainable; the lookup computes only the requested rows.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _require_tensorly():
    try:
        import tensorly  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tensorised embeddings need tensorly: pip install 'qlite[llm]'") from e
    import tensorly

    return tensorly


def vocab_shape(n: int, k: int) -> tuple[int, ...]:
    """``k`` near-equal factors whose product is at least ``n`` (the padded vocabulary)."""
    q = math.ceil(n ** (1.0 / k))
    dims = [q] * k
    for i in range(k - 1, -1, -1):  # shrink trailing factors while the product still covers n
        while dims[i] > 1 and math.prod(dims[:i] + [dims[i] - 1] + dims[i + 1 :]) >= n:
            dims[i] -= 1
    return tuple(dims)


def dim_shape(d: int, k: int) -> tuple[int, ...]:
    """An exact factorisation of ``d`` into ``k`` factors, as balanced as a greedy split allows."""
    primes, x, p = [], d, 2
    while x > 1:
        while x % p == 0:
            primes.append(p)
            x //= p
        p += 1
    dims = [1] * k
    for q in sorted(primes, reverse=True):
        dims[dims.index(min(dims))] *= q
    return tuple(sorted(dims, reverse=True))


def _digits(ids: torch.Tensor, shape: tuple[int, ...]) -> list[torch.Tensor]:
    out, rest = [], ids
    for s in reversed(shape):
        out.append(rest % s)
        rest = rest // s
    return out[::-1]


class TensorizedEmbedding(nn.Module):
    """An embedding whose table is stored factorised (see the module docstring); ``forward(ids)`` gives
    ``(..., D)`` rows. Build it with :func:`factorize_embedding`."""

    kernel = "dense"

    def __init__(self, method: str, num_embeddings: int, embedding_dim: int, vshape, dshape, params: list[torch.Tensor],
                 padding_idx: int | None = None):
        super().__init__()
        self.method, self.num_embeddings, self.embedding_dim = method, num_embeddings, embedding_dim
        self.vshape, self.dshape, self.padding_idx = tuple(vshape), tuple(dshape), padding_idx
        self.factors = nn.ParameterList([nn.Parameter(p) for p in params])

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` rows for flat ``(N,)`` ids."""
        K = len(self.vshape)
        dig = _digits(ids, self.vshape)
        if self.method == "tt":
            res = None  # (N, P, r): rows of the partial chain product
            for k in range(K):
                G = self.factors[k][:, dig[k]]  # (r_{k-1}, N, d_k, r_k)
                G = G.permute(1, 0, 2, 3)  # (N, r_{k-1}, d_k, r_k)
                if res is None:
                    res = G[:, 0]  # r_0 = 1: (N, d_1, r_1)
                else:
                    res = torch.einsum("npr,nrds->npds", res, G).reshape(res.shape[0], -1, G.shape[-1])
            return res[..., 0]  # r_K = 1: (N, D)
        core, fac = self.factors[0], self.factors[1:]
        x = core.unsqueeze(0).expand(ids.shape[0], *core.shape)  # (N, rv_1..rv_K, rd_1..rd_K)
        for k in range(K):
            a = fac[k][dig[k]]  # (N, rv_k)
            x = torch.einsum("nr,nr...->n...", a, x)  # contract the leading vocabulary mode
        for k in range(K):
            x = torch.tensordot(x, fac[K + k], dims=([1], [1]))  # (N, ..., d_k) : rotate modes to the end
        return x.reshape(ids.shape[0], -1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        # the factor grid covers a padded vocabulary: an id past V would read a padding row, where
        # nn.Embedding raises (checked off CUDA only: reading the ids there would sync every forward)
        if not flat.is_cuda and flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(f"token ids must lie in [0, {self.num_embeddings}), got "
                             f"[{int(flat.min())}, {int(flat.max())}]")
        return self.rows(flat).reshape(*ids.shape, self.embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        """The full ``(V, D)`` table (materialised; for checks and for a tied output head)."""
        return self.rows(torch.arange(self.num_embeddings, device=self.factors[0].device))

    def extra_repr(self) -> str:
        return f"{self.method}, {self.num_embeddings}x{self.embedding_dim}, vocab {self.vshape}, dims {self.dshape}"


def factorize_embedding(emb: nn.Embedding, *, method: str = "tt", rank: int | tuple[int, ...] = 32,
                        n_factors: int = 3) -> TensorizedEmbedding:
    """Factorise an ``nn.Embedding`` (or any ``(V, D)`` weight holder) into a :class:`TensorizedEmbedding`.

    Args:
        method: ``"tt"`` (TT-matrix; ``rank`` = the internal TT ranks, an int for all or a tuple of
            ``n_factors - 1``) or ``"tucker"`` (``rank`` = the core size per mode, an int for all or a tuple
            of ``2 * n_factors``).
        n_factors: ``K``, the number of vocabulary (and feature) factors.
    Raises:
        ValueError: unknown method, ranks of the wrong length or below 1.
    """
    tl = _require_tensorly()
    from tensorly.decomposition import tensor_train_matrix, tucker

    W = emb.weight.detach()
    V, D = W.shape
    if method not in ("tt", "tucker"):
        raise ValueError(f"method must be 'tt' or 'tucker', got {method!r}")
    if not isinstance(n_factors, int) or n_factors < 2:
        raise ValueError(f"n_factors must be an integer >= 2, got {n_factors!r}")
    vs, ds = vocab_shape(V, n_factors), dim_shape(D, n_factors)
    pad = math.prod(vs) - V
    T = torch.cat([W.double().cpu(), W.new_zeros(pad, D, dtype=torch.float64, device="cpu")]).reshape(*vs, *ds).numpy()
    want = n_factors - 1 if method == "tt" else 2 * n_factors
    ranks = (rank,) * want if isinstance(rank, int) else tuple(rank)
    if len(ranks) != want or any(not isinstance(r, int) or r < 1 for r in ranks):
        raise ValueError(f"{method}: rank must be a positive int or a tuple of {want} positive ints, got {rank!r}")
    tl.set_backend("numpy")
    if method == "tt":
        tt = tensor_train_matrix(T, rank=[1, *ranks, 1])
        params = [torch.from_numpy(f.copy()) for f in tt.factors]
    else:
        full = (*vs, *ds)
        ranks = tuple(min(r, s) for r, s in zip(ranks, full))
        core, facs = tucker(T, rank=list(ranks), init="svd", n_iter_max=20, random_state=0)
        params = [torch.from_numpy(core.copy())] + [torch.from_numpy(f.copy()) for f in facs]
    params = [p.to(device=W.device, dtype=W.dtype) for p in params]
    return TensorizedEmbedding(method, V, D, vs, ds, params, getattr(emb, "padding_idx", None))
