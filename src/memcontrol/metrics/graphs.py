"""The graph step of the extraction attack: groups of generations that are all near one another.

Carlini et al. flag a prompt when many of its generations form a clique (every pair within the
distance threshold); the MemControl authors' code uses connected components instead, which also
joins chains of small steps (a to b to c with a far from c). Both are offered. Graphs are small
(one prompt's generations), so an exact Bron-Kerbosch search is cheap and needs no graph library.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components

GROUPINGS = ("clique", "connected-components")


def maximum_clique(adjacency: np.ndarray) -> list[int]:
    """Largest set of nodes all adjacent to each other (sorted; the first found among equals).

    Bron-Kerbosch with pivoting, pruned by the size of the best clique so far.
    """
    neighbours = [set(np.flatnonzero(row).tolist()) - {i} for i, row in enumerate(np.asarray(adjacency, dtype=bool))]
    best: list[int] = []

    def expand(clique: list[int], candidates: set[int], excluded: set[int]) -> None:
        nonlocal best
        if not candidates:
            if len(clique) > len(best):
                best = clique
            return
        if len(clique) + len(candidates) <= len(best):
            return
        pivot = max(candidates | excluded, key=lambda u: len(candidates & neighbours[u]))
        for v in sorted(candidates - neighbours[pivot]):
            expand(clique + [v], candidates & neighbours[v], excluded & neighbours[v])
            candidates = candidates - {v}
            excluded = excluded | {v}

    expand([], set(range(len(neighbours))), set())
    return sorted(best)


def disjoint_cliques(adjacency: np.ndarray, min_size: int) -> list[list[int]]:
    """Maximum cliques taken greedily, largest first, each removed before the next, while they have ``min_size`` nodes.

    A prompt's generations may settle on more than one image; each such mode is a group.
    """
    adjacency = np.asarray(adjacency, dtype=bool)
    remaining = np.arange(len(adjacency))
    groups = []
    while len(remaining) >= min_size:
        clique = maximum_clique(adjacency[np.ix_(remaining, remaining)])
        if len(clique) < min_size:
            break
        groups.append(remaining[clique].tolist())
        remaining = np.delete(remaining, clique)
    return groups


def components(adjacency: np.ndarray, min_size: int) -> list[list[int]]:
    """Connected components with at least ``min_size`` nodes, in order of their smallest node."""
    count, labels = connected_components(np.asarray(adjacency, dtype=bool), directed=False)
    groups = [np.flatnonzero(labels == c).tolist() for c in range(count)]
    return sorted((g for g in groups if len(g) >= min_size), key=lambda g: g[0])


def find_groups(adjacency: np.ndarray, min_size: int, grouping: str = "clique") -> list[list[int]]:
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping {grouping!r}: expected one of {', '.join(GROUPINGS)}")
    return disjoint_cliques(adjacency, min_size) if grouping == "clique" else components(adjacency, min_size)
