"""Token masks as rows of one boolean table, and the soft penalty on scores."""

from __future__ import annotations

import torch


def penalized(scores: torch.Tensor, candidates: torch.Tensor, bad: torch.Tensor,
               penalty: float) -> torch.Tensor:
    """scores - penalty * (std of each row's finite candidate scores) on the bad tokens."""
    finite = candidates & torch.isfinite(scores)
    n = finite.sum(dim=1, keepdim=True)
    values = torch.where(finite, scores, 0.0)
    mean = values.sum(dim=1, keepdim=True) / n.clamp(min=1)
    var = torch.where(finite, (scores - mean) ** 2, 0.0).sum(dim=1, keepdim=True) \
        / (n - 1).clamp(min=1)
    std = var.sqrt()
    std = torch.where(torch.isfinite(std) & (std > 0), std, 1.0)
    std = torch.where(n >= 2, std, 0.0)
    return scores - bad * (penalty * std)


class MaskTable:
    """Token masks by key, as rows of one boolean table (one table a vocabulary width)."""

    LIMIT = 1 << 16          # distinct masks kept; past that the table starts again

    def __init__(self) -> None:
        self._index: dict[tuple, int] = {}
        self._specs: list[tuple[torch.Tensor, bool]] = []   # (ids, True: keep / False: drop)
        self._dense: dict[int, tuple[torch.Tensor, int]] = {}  # width -> (table, rows built)

    def keep(self, key: tuple, ids: torch.Tensor) -> int:
        """A mask that is True on `ids` only."""
        return self._add(("keep", *key), ids, True)

    def drop(self, key: tuple, ids: torch.Tensor) -> int:
        """A mask that is True everywhere but on `ids`."""
        return self._add(("drop", *key), ids, False)

    def _add(self, key: tuple, ids: torch.Tensor, keep: bool) -> int:
        found = self._index.get(key)
        if found is None:
            if len(self._specs) >= self.LIMIT:
                raise TableFull
            found = self._index[key] = len(self._specs)
            self._specs.append((ids, keep))
        return found

    def clear(self) -> None:
        self._index.clear()
        self._specs.clear()
        self._dense.clear()

    def dense(self, width: int) -> torch.Tensor:
        table, built = self._dense.get(width, (None, 0))
        need = len(self._specs)
        if table is None or table.shape[0] < need:       # grow by doubling
            bigger = torch.zeros(max(64, 2 * need), width, dtype=torch.bool)
            if table is not None:
                bigger[:built] = table[:built]
            table = bigger
        for row in range(built, need):
            ids, keep = self._specs[row]
            table[row].fill_(not keep)
            table[row, ids[ids < width]] = keep
        self._dense[width] = (table, need)
        return table


class TableFull(Exception):
    """More distinct masks than the table keeps: clear the caches and plan again."""

