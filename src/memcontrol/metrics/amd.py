"""Average minimum cosine distance (AMD, Bai et al. 2021): how close, on average, each generated sample
comes to its nearest training sample in a feature space. Lower means closer to copies, so less
memorization shows as a higher AMD.

Both sides are processed in chunks, so that 100,000 training features are never compared in one
(generated x training) matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nearest_cosine(
    queries: torch.Tensor, references: torch.Tensor, *, query_chunk: int = 1024, reference_chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, the minimum cosine distance (1 - cosine similarity) to any reference, and that reference's index.

    Runs on the queries' device; reference chunks are moved there one at a time.
    """
    if len(queries) == 0 or len(references) == 0:
        raise ValueError(f"nearest_cosine needs queries and references, got {len(queries)} and {len(references)}")
    distances, indices = [], []
    for q in queries.split(query_chunk):
        q = F.normalize(q.float(), dim=1)
        best = torch.full((len(q),), -2.0, device=q.device)  # below any cosine similarity
        best_index = torch.zeros(len(q), dtype=torch.long, device=q.device)
        for start in range(0, len(references), reference_chunk):
            r = F.normalize(references[start : start + reference_chunk].to(q.device, torch.float32), dim=1)
            similarity, index = (q @ r.T).max(dim=1)
            better = similarity > best
            best = torch.where(better, similarity, best)
            best_index = torch.where(better, index + start, best_index)
        distances.append((1 - best).clamp(min=0))  # round-off can make identical vectors' cosine exceed 1
        indices.append(best_index)
    return torch.cat(distances), torch.cat(indices)


def amd(
    generated: torch.Tensor, training: torch.Tensor, *, query_chunk: int = 1024, reference_chunk: int = 8192
) -> float:
    """Mean over generated features (N, D) of the minimum cosine distance to the training features (M, D)."""
    distances, _ = nearest_cosine(generated, training, query_chunk=query_chunk, reference_chunk=reference_chunk)
    return float(distances.mean())
