"""EP-init (Euclidean projection onto the l1 ball) vs A2Q's default init, on real trained weights."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from a2qhls.errors import A2QError  # noqa: E402
from a2qhls.frontend.data import load_dataset  # noqa: E402
from a2qhls.frontend.init import init_from_float, project_l1_ball  # noqa: E402
from a2qhls.frontend.layers import weight_layers  # noqa: E402
from a2qhls.frontend.train import TrainConfig, build_mlp, fit  # noqa: E402

torch.set_num_threads(1)


def _projection_by_bisection(v: np.ndarray, r: float) -> np.ndarray:
    """Reference: soft-threshold by the theta (found by bisection) that makes ||x||_1 = r."""
    if np.abs(v).sum() <= r:
        return v.copy()
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(np.abs(v) - mid, 0).sum() > r:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


def test_projection_matches_bisection_and_is_closest_point():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(40, 57)) * rng.uniform(0.1, 3, size=(40, 1))
    radius = rng.uniform(0.5, 30, size=40)
    x = project_l1_ball(torch.tensor(v), torch.tensor(radius)).numpy()
    for i in range(len(v)):
        ref = _projection_by_bisection(v[i], radius[i])
        np.testing.assert_allclose(x[i], ref, atol=1e-9)
        assert np.abs(x[i]).sum() <= radius[i] + 1e-9
        # no random point of the ball is closer to v than the projection
        for _ in range(20):
            y = rng.normal(size=v.shape[1])
            y *= rng.uniform(0, 1) * radius[i] / np.abs(y).sum()
            assert np.linalg.norm(v[i] - y) >= np.linalg.norm(v[i] - x[i]) - 1e-9


def test_projection_leaves_rows_inside_the_ball_unchanged():
    v = torch.tensor([[0.5, -0.25, 0.0], [3.0, -1.0, 0.5]], dtype=torch.float64)
    x = project_l1_ball(v, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.equal(x[0], v[0])
    assert torch.allclose(x[1], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


@pytest.fixture(scope="module")
def digits_float():
    data = load_dataset("digits", 0)
    torch.manual_seed(0)
    model = build_mlp(data.features, [64, 32], data.classes, "float")
    fit(model, data, TrainConfig(epochs=15, seed=0))
    return data, model


def _errors(qmodel, fmodel):
    """Squared weight error against the float checkpoint, over-budget channels and the rest.

    For A2Q+ the reference is the zero-centred float weight (what the quantizer represents).
    """
    over_err = inside_err = 0.0
    ints = []
    with torch.no_grad():
        for ql, fl in zip(weight_layers(qmodel), weight_layers(fmodel)):
            wq, w = ql.weight_quant, fl.weight
            if wq.zero_center:
                w = w - w.mean(1, keepdim=True)
            over = w.abs().sum(1) > wq.scale().view(-1) * wq.budget
            e = ((ql.quant_weight() - w) ** 2).sum(1)
            over_err += float(e[over].sum())
            inside_err += float(e[~over].sum())
            ints.append(ql.int_weight()[~over])
    return over_err, inside_err, ints


@pytest.mark.parametrize("quant,P", [("a2q", 10), ("a2q", 12), ("a2q+", 10), ("a2q+", 11)])
def test_ep_init_has_lower_quantization_error_than_default(digits_float, quant, P):
    data, fmodel = digits_float
    res = {}
    for method in ("default", "ep"):
        qmodel = build_mlp(data.features, [64, 32], data.classes, quant, 4, 4, P)
        init_from_float(qmodel, fmodel, method)
        res[method] = _errors(qmodel, fmodel)
    (over_d, in_d, ints_d), (over_ep, in_ep, ints_ep) = res["default"], res["ep"]
    assert over_d > 0  # the target is tight enough to matter
    assert over_ep < 0.9 * over_d, (over_ep, over_d)
    # channels already inside their l1 ball are left exactly as the default init leaves them
    assert in_ep == in_d
    assert all(torch.equal(a, b) for a, b in zip(ints_d, ints_ep))


def test_ep_init_keeps_large_weights_and_the_budget(digits_float):
    data, fmodel = digits_float
    qmodel = build_mlp(data.features, [64, 32], data.classes, "a2q", 4, 4, 10)
    init_from_float(qmodel, fmodel, "ep")
    layer, flayer = weight_layers(qmodel)[0], weight_layers(fmodel)[0]
    wq = layer.weight_quant
    # each over-budget channel now lies on the l1 sphere of radius s*T, and g is its norm
    norms = layer.weight.detach().abs().sum(1, keepdim=True)
    assert torch.allclose(norms, torch.minimum(flayer.weight.detach().abs().sum(1, keepdim=True),
                                               wq.scale() * wq.budget), rtol=1e-5)
    assert torch.allclose(wq.g(), norms, rtol=1e-5)
    # a channel's largest float weight survives as a nonzero integer
    q = layer.int_weight()
    top = flayer.weight.detach().abs().argmax(1)
    assert (q.gather(1, top[:, None]) != 0).float().mean() > 0.9


def test_training_from_scratch_collapses_where_the_checkpoint_does_not(digits_float):
    """A2QPLUS.md: under a tight constraint, random init truncates wide layers to all-zero weights."""
    data, fmodel = digits_float
    P = 10
    torch.manual_seed(0)
    scratch = build_mlp(data.features, [64, 32], data.classes, "a2q", 4, 4, P)
    first = weight_layers(scratch)[0].int_weight()
    assert float((first == 0).float().mean()) > 0.95
    torch.manual_seed(0)
    ckpt = build_mlp(data.features, [64, 32], data.classes, "a2q", 4, 4, P)
    init_from_float(ckpt, fmodel, "ep")
    assert float((weight_layers(ckpt)[0].int_weight() == 0).float().mean()) < 0.9
    acc_scratch = fit(scratch, data, TrainConfig(epochs=10, seed=0)).test_accuracy
    acc_ckpt = fit(ckpt, data, TrainConfig(epochs=10, seed=0)).test_accuracy
    assert acc_ckpt > 0.9
    assert acc_scratch < acc_ckpt - 0.2, (acc_scratch, acc_ckpt)


def test_init_rejects_bad_method_and_mismatched_checkpoint(digits_float):
    data, fmodel = digits_float
    qmodel = build_mlp(data.features, [64, 32], data.classes, "a2q+", 4, 4, 12)
    with pytest.raises(A2QError, match="initialization"):
        init_from_float(qmodel, fmodel, "bogus")
    other = build_mlp(data.features, [64, 16], data.classes, "float")
    with pytest.raises(A2QError, match="shape"):
        init_from_float(qmodel, other, "ep")
