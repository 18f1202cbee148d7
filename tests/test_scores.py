"""Baseline scores: orientation (higher = more likely wrong), numerical stability, SML and
MC dropout semantics. Oracle: the naive textbook formulas in float64 numpy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ros2_fed.fed.postprocess import SMLPostprocess
from ros2_fed.scores import (
    SCORE_FUNCTIONS,
    BaselineScore,
    compute_score,
    energy_score,
    entropy_score,
    max_logit_score,
    mc_dropout_score,
    msp_score,
    sml_score,
    standardized_max_logit,
)

torch.set_num_threads(1)

C = 5
MEAN = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
STD = torch.tensor([0.5, 2.0, 1.0, 4.0, 1.5])


def _naive(name: str, logits: np.ndarray) -> np.ndarray:
    """Textbook formulas, float64, no stabilisation (overflow -> inf/nan is expected)."""
    z = logits.astype(np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        if name == "msp":
            return 1.0 - p.max(axis=1, keepdims=True)
        if name == "maxlogit":
            return -z.max(axis=1, keepdims=True)
        if name == "energy":
            return -np.log(e.sum(axis=1, keepdims=True))
        if name == "entropy":
            return -(p * np.log(p)).sum(axis=1, keepdims=True)
        if name == "sml":  # no post-processing
            k = z.argmax(axis=1)
            m = MEAN.double().numpy()[k]
            s = STD.double().numpy()[k]
            return -((z.max(axis=1) - m) / s)[:, None]
    raise KeyError(name)


def _score(name: str, logits: torch.Tensor, post: bool = False) -> torch.Tensor:
    if name == "sml":
        return compute_score("sml", logits, class_mean=MEAN, class_std=STD, postprocess=post)
    return compute_score(name, logits)


NAMES = ["msp", "maxlogit", "energy", "entropy", "sml"]


def test_registry():
    assert set(SCORE_FUNCTIONS) == set(NAMES)
    with pytest.raises(ValueError):
        compute_score("odin", torch.zeros(1, 2, 1, 1))


@pytest.mark.parametrize("name", NAMES)
def test_matches_naive_formula(name):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, C, 6, 7, generator=gen) * 4
    got = _score(name, logits)
    assert got.shape == (2, 1, 6, 7)
    np.testing.assert_allclose(
        got.double().numpy(), _naive(name, logits.numpy()), atol=2e-5, rtol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("post", [False, True])
def test_finite_for_huge_logits(name, post):
    gen = torch.Generator().manual_seed(1)
    sign = torch.randint(0, 2, (2, C, 9, 10), generator=gen).float() * 2 - 1
    logits = sign * 1e4
    logits[0, :, 0, 0] = 1e4  # all tied
    logits[0, :, 0, 1] = -1e4
    got = _score(name, logits, post=post)
    assert got.shape == (2, 1, 9, 10)
    assert torch.isfinite(got).all()
    if post:
        return
    naive = _naive(name, logits.numpy())
    finite = np.isfinite(naive)
    np.testing.assert_allclose(got.double().numpy()[finite], naive[finite], atol=1e-3, rtol=1e-6)


def test_huge_logits_exact_values():
    onehot = torch.full((1, C, 1, 1), -1e4)
    onehot[0, 2] = 1e4
    tied = torch.full((1, C, 1, 1), 1e4)
    assert float(msp_score(onehot)) == 0.0
    assert float(entropy_score(onehot)) == 0.0
    assert float(energy_score(onehot)) == -1e4
    assert float(max_logit_score(onehot)) == -1e4
    assert math.isclose(float(msp_score(tied)), 1 - 1 / C, abs_tol=1e-6)
    assert math.isclose(float(entropy_score(tied)), math.log(C), abs_tol=1e-5)
    assert math.isclose(float(energy_score(tied)), -(1e4 + math.log(C)), rel_tol=1e-6)


def test_msp_keeps_tiny_error_probabilities():
    logits = torch.zeros(1, 2, 1, 1)
    logits[0, 0] = 20.0  # p_wrong = sigmoid(-20) ~ 2e-9: 1 - p would round to 0 in float32
    assert math.isclose(float(msp_score(logits)), 1 / (1 + math.exp(20)), rel_tol=1e-4)


def test_energy_temperature():
    logits = torch.randn(1, C, 3, 3)
    t = 2.5
    ref = -t * torch.logsumexp(logits.double() / t, dim=1, keepdim=True)
    torch.testing.assert_close(
        energy_score(logits, temperature=t).double(), ref, atol=1e-5, rtol=1e-6
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("post", [False, True])
def test_confident_scores_lower_than_uniform(name, post):
    h, w = 8, 9
    confident = torch.zeros(1, C, h, w)
    confident[:, 0] = 10.0
    uniform = torch.zeros(1, C, h, w)
    if name == "sml":
        # same predicted class (0) for both maps so the statistics are comparable
        uniform[:, 0] = 1e-3
        a = sml_score(confident, torch.zeros(C), torch.ones(C), postprocess=post)
        b = sml_score(uniform, torch.zeros(C), torch.ones(C), postprocess=post)
    else:
        a, b = _score(name, confident), _score(name, uniform)
    assert (a < b).all()


def test_sml_identity_stats_equals_max_logit():
    logits = torch.randn(2, C, 7, 5) * 3
    got = sml_score(logits, torch.zeros(C), torch.ones(C), postprocess=False)
    assert torch.equal(got, max_logit_score(logits))


def test_sml_postprocess_applied_before_negation():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(1, C, 12, 14, generator=gen) * 3
    sml, labels = standardized_max_logit(logits, MEAN, STD)
    assert labels.shape == (1, 12, 14) and labels.dtype == torch.int64
    post = SMLPostprocess()
    assert torch.equal(sml_score(logits, MEAN, STD, postprocess=True), -post(sml, labels))
    assert torch.equal(sml_score(logits, MEAN, STD, postprocess=post), -post(sml, labels))
    assert not torch.equal(sml_score(logits, MEAN, STD, postprocess=True), -sml)


def test_baseline_score_module_exports_to_onnx(tmp_path):
    import onnx
    import onnxruntime as ort

    for name in ["sml", "energy", "entropy", "msp"]:
        mod = BaselineScore(name, class_mean=MEAN, class_std=STD).eval()
        path = tmp_path / f"{name}.onnx"
        x = torch.randn(1, C, 16, 20) * 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                mod,
                (x,),
                str(path),
                input_names=["logits"],
                output_names=["score"],
                opset_version=18,
                dynamo=False,
                dynamic_axes={
                    "logits": {0: "b", 2: "h", 3: "w"},
                    "score": {0: "b", 2: "h", 3: "w"},
                },
            )
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for shape in [(1, C, 16, 20), (2, C, 11, 23)]:
            x = torch.randn(*shape) * 5
            x[0, :, 0, 0] = 1e4
            got = sess.run(None, {"logits": x.numpy()})[0]
            want = mod(x).numpy()
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# MC dropout
# ----------------------------------------------------------------------------------------


class TinySeg(nn.Module):
    """Conv -> BN -> ReLU -> Dropout -> Conv; returns (logits, features) like our backbones."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(p)
        self.head = nn.Sequential(nn.Dropout(p), nn.Conv2d(8, C, 1))
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        f = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.head(f), f


def _bn_state(m: TinySeg) -> dict:
    return {k: v.clone() for k, v in m.bn.state_dict().items()}


def _modes(m: nn.Module) -> dict:
    return {name: mod.training for name, mod in m.named_modules()}


def test_mc_dropout_keeps_bn_and_restores_modes():
    torch.manual_seed(0)
    model = TinySeg(0.5)
    x = torch.randn(2, 3, 5, 6)
    for setup in ("train", "eval", "mixed"):
        model.train() if setup != "eval" else model.eval()
        if setup == "mixed":
            model.head.eval()
        before_modes, before_bn = _modes(model), _bn_state(model)
        out = mc_dropout_score(model, x, passes=3, seed=0)
        assert out.shape == (2, 1, 5, 6) and torch.isfinite(out).all()
        assert _modes(model) == before_modes
        for k, v in _bn_state(model).items():
            assert torch.equal(v, before_bn[k]), k


def test_mc_dropout_restores_modes_on_exception():
    model = TinySeg(0.5).train()
    calls = {"n": 0}

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")

    handle = model.head.register_forward_hook(boom)
    before = _modes(model)
    with pytest.raises(RuntimeError, match="boom"):
        mc_dropout_score(model, torch.randn(1, 3, 4, 4), passes=4, seed=1)
    handle.remove()
    assert _modes(model) == before


def test_mc_dropout_zero_p_equals_softmax_entropy():
    torch.manual_seed(0)
    model = TinySeg(0.0).train()
    x = torch.randn(2, 3, 5, 6)
    got = mc_dropout_score(model, x, passes=3)
    model.eval()
    with torch.no_grad():
        model_eval_logits = model(x)[0]
    torch.testing.assert_close(got, entropy_score(model_eval_logits), atol=1e-5, rtol=1e-5)
    msp = mc_dropout_score(model, x, passes=2, kind="msp")
    torch.testing.assert_close(msp, msp_score(model_eval_logits), atol=1e-5, rtol=1e-5)
    mi = mc_dropout_score(model, x, passes=2, kind="mutual_info")
    assert float(mi.abs().max()) < 1e-5


def test_mc_dropout_seeded_reproducible_and_stochastic():
    torch.manual_seed(0)
    model = TinySeg(0.5).eval()
    x = torch.randn(1, 3, 6, 6)
    rng_before = torch.get_rng_state()
    a = mc_dropout_score(model, x, passes=4, seed=123)
    b = mc_dropout_score(model, x, passes=4, seed=123)
    c = mc_dropout_score(model, x, passes=4, seed=124)
    assert torch.equal(torch.get_rng_state(), rng_before)  # caller's RNG untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(
        mc_dropout_score(model, x, passes=4, generator=g1),
        mc_dropout_score(model, x, passes=4, generator=g2),
    )
    # stochastic: differs from the deterministic eval-mode entropy
    with torch.no_grad():
        det = entropy_score(model(x)[0])
    assert not torch.allclose(a, det)
    for kind in ("entropy", "msp", "mutual_info"):
        s = mc_dropout_score(model, x, passes=4, seed=5, kind=kind)
        assert s.shape == (1, 1, 6, 6) and torch.isfinite(s).all() and (s >= 0).all()
    assert (
        mc_dropout_score(model, x, passes=4, seed=5, kind="entropy") <= math.log(C) + 1e-6
    ).all()


def test_mc_dropout_accepts_plain_callable_and_bad_args():
    model = TinySeg(0.0).eval()
    x = torch.randn(1, 3, 4, 4)
    out = mc_dropout_score(lambda inp: model(inp)[0], x, passes=2)
    with torch.no_grad():
        torch.testing.assert_close(out, entropy_score(model(x)[0]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        mc_dropout_score(model, x, passes=0)
    with pytest.raises(ValueError):
        mc_dropout_score(model, x, kind="variance")
