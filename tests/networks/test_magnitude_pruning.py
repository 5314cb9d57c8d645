"""Tests of optlab.networks.magnitude_pruning, cheapest first; the chapter's claim on other seeds and wrong variants."""
import sys
from pathlib import Path

import numpy as np
import pytest

from optlab.claims import ClaimFailed
from optlab.networks import magnitude_pruning as mp
from optlab.stochastic.obs import density_schedule, magnitude_prune
from optlab.testing import check_bad_inputs, check_grad, check_method_contract

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from claims import run_claim  # noqa: E402

CHAPTER = ROOT / "chapters" / "networks" / "magnitude_pruning.ipynb"
MODULE = "optlab.networks.magnitude_pruning"
# The chapter uses seeds 1-3, 600 dense and 300 fine-tuning steps.
CLAIM_SEEDS = [7001, 7002, 7003]
SIZES = {"DENSE_ITERS": 800, "FT_ITERS": 200}

LAYERS = [slice(0, 6), slice(8, 20)]          # entries 6, 7 and 20.. are "biases"


def weights(rng=0, d=24):
    return np.random.default_rng(rng).standard_normal(d)


# --- exact identities and oracles --------------------------------------------------------------

def test_the_network_gradient_matches_finite_differences():
    p = mp.digits_relu_mlp((64, 5, 4, 10), n_train=30, rng=0)
    x = p.x0 + 0.01 * np.random.default_rng(1).standard_normal(p.dim)
    assert check_grad(p.f, p.grad, x, n_dirs=12, rng=0) < 1e-5
    assert [sl.stop - sl.start for sl in p.info["layers"]] == [320, 20, 40] and p.info["fan_out"] == [5, 4, 10]
    assert p.dim == 320 + 5 + 20 + 4 + 40 + 10
    np.testing.assert_allclose(np.std(p.x0[p.info["layers"][0]]), np.sqrt(2 / 64), rtol=0.2)  # He init


def test_global_pruning_matches_the_m_fac_chapter_and_counts():
    w = weights()
    for s in (0.0, 0.3, 0.5, 0.77, 1.0):
        mask = mp.prune_mask(w, LAYERS, s)
        inside = np.r_[0:6, 8:20]
        sub = magnitude_prune(w[inside], s)                 # the M-FAC chapter's one-shot code path
        np.testing.assert_array_equal(mask[inside], sub != 0)
        assert (~mask).sum() == round(s * 18) and mask[[6, 7, 20, 21, 22, 23]].all()
        assert mp.keep_counts(w, LAYERS, s).sum() == 18 - round(s * 18)


def test_uniform_pruning_prunes_each_layer_alone():
    w = weights(3)
    mask = mp.prune_mask(w, LAYERS, 0.5, "uniform")
    assert mask[0:6].sum() == 3 and mask[8:20].sum() == 6
    for sl in LAYERS:
        kept, dropped = np.abs(w[sl][mask[sl]]), np.abs(w[sl][~mask[sl]])
        assert kept.min() >= dropped.max()


def test_minimum_threshold_keeps_every_layer_above_it_and_the_total():
    rng = np.random.default_rng(5)
    for _ in range(200):
        N = rng.integers(1, 400, size=rng.integers(1, 6))
        total = int(rng.integers(0, N.sum() + 1))
        counts = mp.keep_counts(rng.standard_normal(N.sum()) * np.repeat(rng.uniform(0.1, 3, N.size), N),
                                [slice(a, b) for a, b in zip(np.r_[0, np.cumsum(N)[:-1]], np.cumsum(N))],
                                1.0 - total / N.sum())
        m = int(rng.integers(0, 60))
        if np.minimum(N, m).sum() > counts.sum():
            with pytest.raises(ValueError, match="min_keep"):
                mp.minimum_threshold(N, counts, m)
            continue
        k = mp.minimum_threshold(N, counts, m)
        assert k.sum() == counts.sum() and np.all(k <= N) and np.all(k >= np.minimum(N, m)), (N, counts, m, k)
    np.testing.assert_array_equal(mp.minimum_threshold([10, 1000, 1000], [10, 5, 985], 100), [10, 100, 890])
    np.testing.assert_array_equal(mp.minimum_threshold([50, 500], [20, 100], 0), [20, 100])  # m = 0: Global MP


def test_global_mt_prunes_by_magnitude_within_each_layer():
    w = np.concatenate([np.full(6, 0.01) * np.arange(1, 7), [0, 0], np.arange(1.0, 13.0), np.zeros(4)])
    assert mp.keep_counts(w, LAYERS, 0.5).tolist() == [0, 9]          # Global MP empties layer 1
    mask = mp.prune_mask(w, LAYERS, 0.5, "global_mt", min_keep=2)
    assert mask[0:6].tolist() == [False] * 4 + [True] * 2 and mask[8:20].sum() == 7


def test_torch_global_unstructured_gives_identical_masks():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    torch.manual_seed(0)
    layers = [torch.nn.Linear(7, 5), torch.nn.Linear(5, 3), torch.nn.Linear(3, 2)]
    w = np.concatenate([m.weight.detach().double().numpy().ravel() for m in layers])
    sl = np.cumsum([0] + [m.weight.numel() for m in layers])
    for s in (0.2, 0.5, 0.9):
        for m in layers:
            if prune.is_pruned(m):
                prune.remove(m, "weight")
        prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=s)
        theirs = np.concatenate([m.weight_mask.numpy().ravel() for m in layers]).astype(bool)
        ours = mp.prune_mask(w, [slice(a, b) for a, b in zip(sl[:-1], sl[1:])], s)
        np.testing.assert_array_equal(ours, theirs)


def test_flops_sparsity():
    assert mp.flops_sparsity([5, 5], [10, 10], [1, 1]) == pytest.approx(0.5)     # MLP: equals weight sparsity
    assert mp.flops_sparsity([10, 0], [10, 90], [64, 1]) == pytest.approx(1 - 640 / 730)


# --- the digits CNN and FLOPs (optlab.networks.pruning_cnn) -------------------------------------

def test_conv_layer_costs_match_a_hand_count():
    torch = pytest.importorskip("torch")
    from optlab.networks import pruning_cnn as pc

    conv = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
    h_out = (8 + 2 * 1 - 3) // 2 + 1                      # 4 output rows (and columns)
    n_weights = 32 * 16 * 3 * 3                            # kernel weights: out x in x kh x kw
    c = pc.layer_costs(torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10)), (16, 8, 8))
    assert c["weights"].tolist() == [n_weights, 5120] and c["positions"].tolist() == [h_out * h_out, 1]
    assert c["flops"].tolist() == [16 * 4608, 5120] == [73728, 5120]
    # the same count, multiply-adds by brute force: every output entry sums in_channels x 3 x 3 products
    out = conv(torch.zeros(1, 16, 8, 8))
    assert out[0].numel() * 16 * 9 == c["flops"][0]
    p = pc.digits_cnn(n_train=50)
    assert p.info["flops"].tolist() == [72 * 64, 1152 * 16, 2560]          # (8, 16) channels
    assert [sl.stop - sl.start for sl in p.info["layers"]] == [72, 1152, 2560]


def test_cnn_gradient_matches_finite_differences_and_its_torch_module():
    torch = pytest.importorskip("torch")
    from optlab.networks import pruning_cnn as pc

    p = pc.digits_cnn((3, 4), n_train=40, rng=1)
    x = p.x0 + 0.01 * np.random.default_rng(2).standard_normal(p.dim)     # off the ReLU kinks
    assert check_grad(p.f, p.grad, x, n_dirs=10, rng=0) < 1e-5
    Xtr, ytr = p.info["data"]["train"]
    with torch.no_grad():
        ce = float(torch.nn.functional.cross_entropy(p.info["module"](x)(Xtr), ytr))
    assert ce == pytest.approx(p.f(x), rel=1e-12)        # the flat layout is torch's weight layout


def test_cnn_masks_match_torch_global_unstructured_and_flops_part_from_weights():
    pytest.importorskip("torch")
    from torch.nn.utils import prune

    from optlab.networks import pruning_cnn as pc

    p = pc.digits_cnn(rng=3)
    layers, P = p.info["layers"], p.info["positions"]
    N = np.array([sl.stop - sl.start for sl in layers])
    x = p.x0 + 0.01 * np.random.default_rng(4).standard_normal(p.dim)
    for s in (0.3, 0.8, 0.95):
        net = p.info["module"](x)
        convs = [net[0], net[2], net[5]]
        prune.global_unstructured([(m, "weight") for m in convs], pruning_method=prune.L1Unstructured, amount=s)
        theirs = np.concatenate([m.weight_mask.numpy().ravel() for m in convs]).astype(bool)
        ours = mp.prune_mask(x, layers, s)
        inside = np.concatenate([np.arange(sl.start, sl.stop) for sl in layers])
        np.testing.assert_array_equal(ours[inside], theirs)
        k_u, k_g = mp.keep_counts(x, layers, s, "uniform"), mp.keep_counts(x, layers, s)
        assert abs(mp.flops_sparsity(k_u, N, P) - s) <= 1.0 / N.min()          # uniform: FLOPs = weights
        assert mp.flops_sparsity(k_g, N, P) < s - 0.05       # Global MP keeps the costly first conv


# --- the methods -------------------------------------------------------------------------------

def run(rng=0, x0=(1.0, -2.0, 0.5, 3.0), callback=None):
    return mp.masked_sgd(lambda x, g: x - 1.0 + 0.1 * g.standard_normal(x.size), x0,
                         mask=np.array([True, True, False, True]), lr=0.1, n_iters=20, rng=rng, callback=callback)


def test_core_contract():
    res = check_method_contract(run)
    assert res.x[2] == 0.0 and res.n_evals == {"stoch_grad": 20} and "density" in res.history


START = tuple(weights(2))


def test_gradual_contract_and_nested_masks():
    def grun(rng=0, x0=START, callback=None):
        return mp.gradual_prune(lambda x, g: 0.1 * g.standard_normal(x.size), x0, layers=LAYERS, sparsity=0.75,
                                n_steps=3, lr=0.1, iters_per_step=5, rng=rng, callback=callback)
    res = check_method_contract(grun)
    expected = [0.0] + [round(s * 18) / 18 for s in density_schedule(0.75, 3)]   # 7, 11, 14 of 18 pruned
    np.testing.assert_allclose(res.history["sparsity"], expected, atol=1e-12)
    assert np.count_nonzero(res.x[np.r_[0:6, 8:20]]) == 18 - 14 and res.counts.sum() == 4
    assert res.n_evals == {"stoch_grad": 15}


def test_masked_sgd_on_a_quadratic_converges_on_the_subspace():
    c = np.array([1.0, 2.0, 3.0])
    res = mp.masked_sgd(lambda x, g: x - c, np.zeros(3), mask=np.array([True, False, True]), lr=0.3,
                        momentum=0.0, n_iters=200)
    np.testing.assert_allclose(res.x, [1.0, 0.0, 3.0], atol=1e-9)


def test_non_finite_iterates_stop_the_run():
    with np.errstate(over="ignore", invalid="ignore"):
        res = mp.masked_sgd(lambda x, g: 10 * x, np.ones(2), mask=np.ones(2, bool), lr=5.0, n_iters=2000)
    assert "non-finite" in res.message and res.n_iters < 2000


BAD_INPUT = {
    "masked_sgd": (mp.masked_sgd, dict(stoch_grad=lambda x, g: x, x0=np.ones(3), mask=np.ones(3, bool), lr=0.1,
                                       n_iters=3),
                   {"x0": [[1.0, np.nan]], "mask": [np.ones(2, bool), np.ones(3)], "lr": [-1.0],
                    "momentum": [1.0, -0.1], "n_iters": [0, 2.5], "n_log": [0],
                    "stoch_grad": [None, (lambda x, g: x[:2], "stoch_grad returned shape")], "f": [3],
                    "rng": ["seed"], "callback": [3]}, ("mask",)),
    "gradual_prune": (mp.gradual_prune, dict(stoch_grad=lambda x, g: x, x0=np.ones(24), layers=LAYERS,
                                             sparsity=0.5, n_steps=2, lr=0.1, iters_per_step=2),
                      {"sparsity": [1.5, -0.1], "n_steps": [0], "rule": ["random"], "layers": [[slice(0, 99)], []],
                       "iters_per_step": [0]}, ("layers", "rule")),
    "prune_mask": (mp.prune_mask, dict(w=weights(), layers=LAYERS, sparsity=0.5),
                   {"w": [[np.inf, 1.0]], "sparsity": [2.0, np.nan], "rule": ["layerwise"],
                    "layers": [[(0, 3)], [slice(20, 30)]], "min_keep": [-1, 2.5]}, ("layers", "rule")),
    "keep_counts": (mp.keep_counts, dict(w=weights(), layers=LAYERS, sparsity=0.5, rule="global_mt", min_keep=2),
                    {"sparsity": [1.2], "min_keep": [-3, (9, "min_keep")]}, ("layers", "rule")),
    "minimum_threshold": (mp.minimum_threshold, dict(sizes=[10, 20], counts=[5, 5], min_keep=2),
                          {"sizes": [[0, 20]], "counts": [[11, 5], [5], [-1, 5]], "min_keep": [-1, (6, "min_keep")]},
                          ("sizes", "counts")),
    "flops_sparsity": (mp.flops_sparsity, dict(counts=[1, 2], sizes=[3, 4], positions=[1, 1]),
                       {"counts": [[5, 2], [1]], "positions": [[0, 1]]}, ("counts", "sizes", "positions")),
    "digits_cnn": ("pruning_cnn.digits_cnn", dict(channels=(2, 3), n_train=50),
                   {"channels": [(0, 3), (2, 1.5)], "n_train": [0, 1797], "batch_size": [0], "rng": ["seed"]},
                   ()),
    "layer_costs": ("pruning_cnn.layer_costs", dict(module="conv", input_shape=(1, 8, 8)),
                    {"module": [None, 3], "input_shape": [(1, 0, 8), (1, 8.5, 8)]}, ("module",)),
    "digits_relu_mlp": (mp.digits_relu_mlp, dict(widths=(64, 4, 10), n_train=50),
                        {"widths": [(63, 4, 10), (64, 4, 9), (64,), (64, 0, 10)], "n_train": [0, 1797],
                         "batch_size": [0], "rng": ["seed"]}, ("widths",)),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    if isinstance(fn, str):                               # the torch module: imported only here
        torch = pytest.importorskip("torch")
        from optlab.networks import pruning_cnn

        fn = getattr(pruning_cnn, fn.split(".")[1])
        if good.get("module") == "conv":
            good = {**good, "module": torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))}
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0


# --- the claim: wrong variants -----------------------------------------------------------------

_masked_sgd, _prune_mask, _minimum_threshold = mp.masked_sgd, mp.prune_mask, mp.minimum_threshold


def regrowing_fine_tune(stoch_grad, x0, *, mask, **kw):
    """Fine-tuning that zeroes the pruned weights once but then updates every weight."""
    return _masked_sgd(stoch_grad, np.asarray(x0) * mask, mask=np.ones_like(mask), **kw)


def signed_global_ranking(w, layers, sparsity, rule="global", min_keep=0):
    """Global MP that ranks the signed weights instead of their magnitudes."""
    if rule != "global":
        return _prune_mask(w, layers, sparsity, rule, min_keep)
    w, mask = np.asarray(w, dtype=float), np.ones(np.size(w), dtype=bool)
    idx = np.concatenate([np.arange(sl.start, sl.stop) for sl in layers])
    mask[idx] = mp.drop_smallest(w[idx], int(round(sparsity * idx.size)))
    return mask


def threshold_for_empty_layers_only(sizes, counts, min_keep):
    """The minimum threshold applied only to the layers Global MP emptied completely."""
    k = np.asarray(counts)
    return _minimum_threshold(sizes, counts, min_keep) if np.any(k == 0) else k


WRONG_VARIANTS = {
    "fine-tuning that lets pruned weights regrow": {f"{MODULE}.masked_sgd": regrowing_fine_tune},
    "Global MP ranking signed weights instead of magnitudes": {f"{MODULE}.prune_mask": signed_global_ranking},
    "a minimum threshold only for completely emptied layers": {
        f"{MODULE}.minimum_threshold": threshold_for_empty_layers_only},
}


@pytest.mark.slow
def test_the_claim_holds_on_seeds_and_sizes_the_chapter_does_not_use():
    verdict = run_claim(CHAPTER, seeds=CLAIM_SEEDS, sizes=SIZES)
    assert verdict.passed
    assert set(verdict.rejects) == set(WRONG_VARIANTS), "the verdict names exactly the variants tested here"


@pytest.mark.slow
@pytest.mark.parametrize("variant", WRONG_VARIANTS)
def test_the_claim_fails_on_a_wrong_variant(variant):
    with pytest.raises(ClaimFailed, match="FAIL"):
        run_claim(CHAPTER, seeds=[1], patches=WRONG_VARIANTS[variant])
