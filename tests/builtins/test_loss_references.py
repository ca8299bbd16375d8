"""Every built-in loss against an independent NumPy reference on small fixed tensors:
the value, and the gradient (autograd against central finite differences of the reference).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from kdsweep_builtins._feature_modules import FitNetLoss
from kdsweep_builtins.feature import attention_transfer_loss
from kdsweep_builtins.losses import dist_loss, dkd_loss, hard_kd_loss, kd_loss
from kdsweep_builtins.multi_teacher import multi_teacher_loss
from kdsweep_builtins.mutual import dml_loss
from kdsweep_builtins.relation import rkd_loss, sp_loss

from kdsweep.plugin import FeatureShapes, LossBatch

RNG = np.random.default_rng(0)
STUDENT = RNG.normal(size=(4, 5))
TEACHER = RNG.normal(size=(4, 5)) * 2
TEACHER_2 = RNG.normal(size=(4, 5))
TARGETS = np.array([0, 3, 1, 3])
T = 3.0


# -- NumPy references ---------------------------------------------------------------------


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    e = np.exp((z - z.max(axis=-1, keepdims=True)) / temperature)
    return e / e.sum(axis=-1, keepdims=True)


def ce(s: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([-np.log(softmax(row)[label]) for row, label in zip(s, y, strict=True)]))


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i p_i log(p_i / q_i) for one distribution."""
    return float(np.sum(p * np.log(p / q)))


def ref_kd(s: np.ndarray, t: np.ndarray, temperature: float, alpha: float) -> float:
    pairs = zip(s, t, strict=True)
    soft = np.mean([kl(softmax(tr, temperature), softmax(sr, temperature)) for sr, tr in pairs])
    return alpha * soft * temperature**2 + (1 - alpha) * ce(s, TARGETS)


def ref_hard_kd(s: np.ndarray, alpha: float) -> float:
    return alpha * ce(s, TEACHER.argmax(axis=1)) + (1 - alpha) * ce(s, TARGETS)


def ref_dkd(s: np.ndarray, alpha: float, beta: float) -> float:
    tckd, nckd = [], []
    for sr, tr, y in zip(s, TEACHER, TARGETS, strict=True):
        ps, pt = softmax(sr, T), softmax(tr, T)
        tckd.append(kl(np.array([pt[y], 1 - pt[y]]), np.array([ps[y], 1 - ps[y]])))
        others = [c for c in range(len(sr)) if c != y]
        nckd.append(kl(softmax(tr[others], T), softmax(sr[others], T)))
    return ce(s, TARGETS) + T**2 * (alpha * np.mean(tckd) + beta * np.mean(nckd))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ref_dist(s: np.ndarray, beta: float, gamma: float) -> float:
    ps, pt = softmax(s, T), softmax(TEACHER, T)
    inter = 1 - np.mean([pearson(ps[i], pt[i]) for i in range(len(ps))])
    intra = 1 - np.mean([pearson(ps[:, c], pt[:, c]) for c in range(ps.shape[1])])
    return ce(s, TARGETS) + T**2 * (beta * inter + gamma * intra)


def ref_multi_teacher(s: np.ndarray, weights: list[float], alpha: float) -> float:
    q = (weights[0] * softmax(TEACHER, T) + weights[1] * softmax(TEACHER_2, T)) / sum(weights)
    soft = np.mean([kl(q[i], softmax(s[i], T)) for i in range(len(s))])
    return alpha * T**2 * soft + (1 - alpha) * ce(s, TARGETS)


def ref_dml(s: np.ndarray, alpha: float) -> float:
    peers = (TEACHER, TEACHER_2)
    kls = [np.mean([kl(softmax(p[i], T), softmax(s[i], T)) for i in range(len(s))]) for p in peers]
    return (1 - alpha) * ce(s, TARGETS) + alpha * T**2 * np.mean(kls)


def ref_attention(f: np.ndarray) -> np.ndarray:
    maps = (f**2).mean(axis=1).reshape(len(f), -1)
    return maps / np.linalg.norm(maps, axis=1, keepdims=True)


def smooth_l1(x: np.ndarray) -> float:
    a = np.abs(x)
    return float(np.mean(np.where(a < 1, 0.5 * x**2, a - 0.5)))


def ref_rkd(fs: np.ndarray, ft: np.ndarray, wd: float, wa: float) -> float:
    def distances(e):
        d = np.array([[np.linalg.norm(a - b) for b in e] for a in e])
        return d / d[d > 0].mean()

    def angles(e):
        out = []
        for a in range(len(e)):
            for b in range(len(e)):
                for c in range(len(e)):
                    u, v = e[b] - e[a], e[c] - e[a]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out.append(0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv))
        return np.array(out)

    return wd * smooth_l1(distances(fs) - distances(ft)) + wa * smooth_l1(angles(fs) - angles(ft))


def ref_sp(fs: np.ndarray, ft: np.ndarray) -> float:
    def gram(f):
        g = f.reshape(len(f), -1) @ f.reshape(len(f), -1).T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    return float(((gram(fs) - gram(ft)) ** 2).sum() / len(fs) ** 2)


# -- the check ----------------------------------------------------------------------------


def numeric_gradient(function: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = 1e-6
        gradient[index] = (function(x + step) - function(x - step)) / 2e-6
    return gradient


def check(
    loss: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[np.ndarray], float],
    x: np.ndarray,
) -> None:
    """``loss`` (of a float64 tensor) equals ``reference`` (of the same array), with gradient."""
    tensor = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = loss(tensor)
    value.backward()
    assert value.item() == pytest.approx(reference(x), rel=1e-7, abs=1e-10)
    assert tensor.grad.numpy() == pytest.approx(numeric_gradient(reference, x), rel=1e-4, abs=1e-6)


def logits_batch(student: torch.Tensor, **extra) -> LossBatch:
    return LossBatch(
        student_logits=student,
        targets=torch.tensor(TARGETS),
        teacher_logits=torch.tensor(TEACHER),
        **extra,
    )


def features_batch(student_features: dict, teacher_features: dict) -> LossBatch:
    return LossBatch(
        student_logits=torch.zeros(len(TARGETS), 5, dtype=torch.float64),
        targets=torch.tensor(TARGETS),
        student_features=student_features,
        teacher_features={k: torch.tensor(v) for k, v in teacher_features.items()},
    )


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_kd(alpha: float) -> None:
    check(
        lambda s: kd_loss(logits_batch(s), temperature=T, alpha=alpha),
        lambda s: ref_kd(s, TEACHER, T, alpha),
        STUDENT,
    )


def test_hard_kd() -> None:
    check(
        lambda s: hard_kd_loss(logits_batch(s), alpha=0.3), lambda s: ref_hard_kd(s, 0.3), STUDENT
    )


def test_dkd() -> None:
    check(
        lambda s: dkd_loss(logits_batch(s), temperature=T, alpha=1.5, beta=4.0),
        lambda s: ref_dkd(s, 1.5, 4.0),
        STUDENT,
    )


def test_dist() -> None:
    check(
        lambda s: dist_loss(logits_batch(s), temperature=T, beta=2.0, gamma=0.5),
        lambda s: ref_dist(s, 2.0, 0.5),
        STUDENT,
    )


def test_multi_teacher_weights_teachers() -> None:
    teachers = (torch.tensor(TEACHER), torch.tensor(TEACHER_2))
    check(
        lambda s: multi_teacher_loss(
            logits_batch(s, all_teacher_logits=teachers),
            temperature=T,
            alpha=0.8,
            weight_0=3.0,
            weight_1=1.0,
        ),
        lambda s: ref_multi_teacher(s, [3.0, 1.0], 0.8),
        STUDENT,
    )


def test_multi_teacher_with_one_teacher_is_kd() -> None:
    student = torch.tensor(STUDENT)
    batch = logits_batch(student, all_teacher_logits=(torch.tensor(TEACHER),))
    assert multi_teacher_loss(batch, temperature=T, alpha=0.7).item() == pytest.approx(
        ref_kd(STUDENT, TEACHER, T, 0.7)
    )


def test_dml() -> None:
    peers = (torch.tensor(TEACHER), torch.tensor(TEACHER_2))
    check(
        lambda s: dml_loss(logits_batch(s, peer_logits=peers), peers=3, temperature=T, alpha=0.4),
        lambda s: ref_dml(s, 0.4),
        STUDENT,
    )


def test_fitnet_hint_through_its_connector() -> None:
    shapes = FeatureShapes(student={"penultimate": (3,)}, teacher={"penultimate": (2,)})
    module = FitNetLoss(shapes).double()
    weight = module.connector.weight.detach().numpy()  # (2, 3)
    f_student, f_teacher = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    check(
        lambda f: module(features_batch({"penultimate": f}, {"penultimate": f_teacher})),
        lambda f: float(np.mean((f @ weight.T - f_teacher) ** 2)),
        f_student,
    )


def test_fitnet_pools_feature_maps_to_the_teacher_size() -> None:
    shapes = FeatureShapes(student={"a": (3, 4, 4)}, teacher={"b": (6, 2, 2)})
    module = FitNetLoss(shapes, student_layer="a", teacher_layer="b")
    batch = features_batch(
        {"a": torch.randn(2, 3, 4, 4)}, {"b": np.zeros((2, 6, 2, 2), dtype=np.float32)}
    )
    assert module(batch, student_layer="a", teacher_layer="b").item() >= 0
    assert isinstance(module.connector, torch.nn.Conv2d)


def ref_avg_pool(f: np.ndarray, size: int) -> np.ndarray:
    """Average-pool (B, C, H, W) to (B, C, size, size) when H = W is a multiple of size."""
    b, c, h, _ = f.shape
    k = h // size
    return f.reshape(b, c, size, k, size, k).mean(axis=(3, 5))


@pytest.mark.parametrize(
    ("student_side", "teacher_side"),
    [(2, 2), (2, 4), (4, 2)],
    ids=["same size", "larger teacher map", "larger student map"],
)
def test_attention_transfer(student_side: int, teacher_side: int) -> None:
    # The reference implementations pool the larger map down to the smaller one.
    f_student = RNG.normal(size=(4, 3, student_side, student_side))
    f_teacher = RNG.normal(size=(4, 5, teacher_side, teacher_side))
    side = min(student_side, teacher_side)
    check(
        lambda f: attention_transfer_loss(
            features_batch({"x": f}, {"y": f_teacher}), student_layer="x", teacher_layer="y"
        ),
        lambda f: float(
            np.mean(
                (
                    ref_attention(ref_avg_pool(f, side))
                    - ref_attention(ref_avg_pool(f_teacher, side))
                )
                ** 2
            )
        ),
        f_student,
    )


def test_rkd() -> None:
    f_student, f_teacher = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 6)) * 3
    check(
        lambda f: rkd_loss(
            features_batch({"penultimate": f}, {"penultimate": f_teacher}),
            distance_weight=1.0,
            angle_weight=2.0,
        ),
        lambda f: ref_rkd(f, f_teacher, 1.0, 2.0),
        f_student,
    )


def test_sp() -> None:
    f_student, f_teacher = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 6))
    check(
        lambda f: sp_loss(features_batch({"penultimate": f}, {"penultimate": f_teacher})),
        lambda f: ref_sp(f, f_teacher),
        f_student,
    )


def test_fitnet_pools_the_larger_teacher_map_down() -> None:
    shapes = FeatureShapes(student={"a": (3, 2, 2)}, teacher={"b": (6, 4, 4)})
    module = FitNetLoss(shapes, student_layer="a", teacher_layer="b").double()
    weight = module.connector.weight.detach().numpy()[:, :, 0, 0]  # (6, 3)
    f_student, f_teacher = RNG.normal(size=(2, 3, 2, 2)), RNG.normal(size=(2, 6, 4, 4))
    check(
        lambda f: module(
            features_batch({"a": f}, {"b": f_teacher}), student_layer="a", teacher_layer="b"
        ),
        lambda f: float(
            np.mean((np.einsum("oc,bchw->bohw", weight, f) - ref_avg_pool(f_teacher, 2)) ** 2)
        ),
        f_student,
    )
