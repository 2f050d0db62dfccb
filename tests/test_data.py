"""Tests of tdlab.data: shapes and dtypes, agreement with the packages the loaders wrap, synthetic teachers
and label noise against their definitions, seeding, and errors that name the argument."""

from __future__ import annotations

import inspect
import math
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from tdlab.data import (
    DATASETS,
    Dataset,
    accuracy,
    digits,
    gaussian_linear,
    load_dataset,
    loss_for,
    mnist1d,
    standardize,
    synthetic_regression,
    with_label_noise,
)


def toy_classification(n_train: int = 20000, n_test: int = 10, num_classes: int = 10, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    X, y = torch.randn(n, 3, generator=g), torch.randint(num_classes, (n,), generator=g)
    return Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:], "classification", num_classes, "toy")


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ------------------------------------------------------------------------------------------------ mnist1d
def test_mnist1d_default_shapes_and_dtypes():
    data = mnist1d()
    assert data.X_train.shape == (4000, 40) and data.X_test.shape == (1000, 40)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.task == "classification" and data.num_classes == 10 and data.out_features == 10
    assert data.in_features == 40 and set(data.y_train.unique().tolist()) == set(range(10))
    # The package generates 500 examples per class and standardises all signals with one mean and std.
    labels = torch.cat([data.y_train, data.y_test])
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    X = torch.cat([data.X_train, data.X_test]).double()
    assert abs(X.mean().item()) < 1e-6 and abs(X.std(correction=0).item() - 1) < 1e-5


def test_mnist1d_is_the_package_split_and_leaves_global_rngs_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(99)
    random.seed(99)
    numpy_draw, python_draw = np.random.rand(), random.random()
    np.random.seed(99)
    random.seed(99)
    data = mnist1d(n_train=400, n_test=100, seed=42)
    assert np.random.rand() == numpy_draw and random.random() == python_draw

    args = get_dataset_args()
    args.num_samples, args.seed = 500, 42  # train_split 0.8: 400 / 100
    reference = make_dataset(args)
    assert torch.equal(data.X_train, torch.tensor(reference["x"], dtype=torch.float32))
    assert torch.equal(data.X_test, torch.tensor(reference["x_test"], dtype=torch.float32))
    assert torch.equal(data.y_train, torch.tensor(reference["y"]))
    assert torch.equal(data.y_test, torch.tensor(reference["y_test"]))


def test_mnist1d_keyword_defaults_are_the_package_defaults():
    from mnist1d.data import get_dataset_args

    package = get_dataset_args(as_dict=True)
    for name, parameter in inspect.signature(mnist1d).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            assert parameter.default == package[name], name


def test_mnist1d_seeding_caching_and_rounding():
    a, b = mnist1d(n_train=120, n_test=33, seed=1), mnist1d(n_train=120, n_test=33, seed=1)
    assert_same_dataset(a, b)
    a.X_train[0] = 1e6  # the cache hands out copies
    assert mnist1d(n_train=120, n_test=33, seed=1).X_train[0, 0] != 1e6
    assert not torch.equal(mnist1d(n_train=120, n_test=33, seed=2).X_train, b.X_train)
    assert (b.num_train, b.num_test) == (120, 33)  # 153 rounded up to 160 generated, 7 left out
    noisier = mnist1d(n_train=120, n_test=33, seed=1, iid_noise_scale=0.5)
    assert not torch.equal(noisier.X_train, b.X_train)


# ------------------------------------------------------------------------------------------------- digits
def test_digits_split_scaling_and_stratification():
    data = digits()
    assert (data.num_train, data.num_test, data.in_features) == (1437, 360, 64)
    assert data.X_train.dtype == torch.float32 and data.y_test.dtype == torch.int64
    X = torch.cat([data.X_train, data.X_test])
    assert X.min() == 0 and X.max() == 1  # 0..16 scaled by 1/16
    all_counts = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10).double()
    test_counts = torch.bincount(data.y_test, minlength=10).double()
    assert torch.all((test_counts - 0.2 * all_counts).abs() <= 1)
    assert_same_dataset(data, digits(seed=0))
    assert not torch.equal(digits(seed=1).y_test, data.y_test)
    assert digits(test_fraction=0.5).num_test == math.ceil(0.5 * 1797)


# ---------------------------------------------------------------------------------------------- synthetic
def test_linear_teacher_is_exact_without_noise_and_has_unit_columns():
    data = synthetic_regression(n_train=200, n_test=50, in_features=8, out_features=3, noise=0.0, seed=3)
    beta = data.info["beta"]
    assert beta.shape == (8, 3) and data.y_train.shape == (200, 3) and data.y_train.dtype == torch.float32
    torch.testing.assert_close(beta.norm(dim=0), torch.ones(3))
    torch.testing.assert_close(data.y_train, data.X_train @ beta)
    torch.testing.assert_close(data.y_test, data.X_test @ beta)
    assert data.task == "regression" and data.num_classes is None and data.out_features == 3


def test_synthetic_noise_level_and_signal_variance():
    n, noise = 20000, 0.3
    data = synthetic_regression(n_train=n, n_test=n, in_features=5, noise=noise, seed=0)
    residual = (data.y_train - data.X_train @ data.info["beta"]).double()
    # Sample variance of n Gaussian draws: standard error sigma^2 sqrt(2 / n).
    assert abs(residual.var().item() - noise**2) < 5 * noise**2 * math.sqrt(2 / n)
    signal = (data.X_test @ data.info["beta"]).double().square()
    assert abs(signal.mean().item() - 1) < 5 * signal.std().item() / math.sqrt(n)  # E (x^T beta)^2 = |beta|^2


def test_mlp_teacher_has_unit_mean_square_and_is_nonlinear():
    n = 20000
    data = synthetic_regression(n_train=n, n_test=10, in_features=6, out_features=2, noise=0.0, teacher="mlp")
    assert "beta" not in data.info and data.info["noise"] == 0.0
    squares = data.y_train.double().square()
    # c was set on 4096 other inputs; both means estimate E f*^2 with standard error std(f*^2) / sqrt(size).
    tolerance = 5 * squares.std(dim=0) * math.sqrt(1 / 4096 + 1 / n)
    assert torch.all((squares.mean(dim=0) - 1).abs() < tolerance), (squares.mean(dim=0), tolerance)
    X = data.X_train.double()
    fitted = X @ torch.linalg.lstsq(X, data.y_train.double()).solution
    assert (data.y_train - fitted).square().mean() > 0.01  # a linear fit leaves a residual


def test_synthetic_seeding_and_shared_inputs():
    a = synthetic_regression(n_train=30, n_test=10, teacher="mlp", seed=5)
    assert_same_dataset(a, synthetic_regression(n_train=30, n_test=10, teacher="mlp", seed=5))
    assert not torch.equal(a.y_train, synthetic_regression(n_train=30, n_test=10, teacher="mlp", seed=6).y_train)
    linear = synthetic_regression(n_train=30, n_test=10, teacher="linear", seed=5)
    assert torch.equal(a.X_train, linear.X_train)  # X_train depends only on seed, n_train, in_features


def test_gaussian_linear():
    data = gaussian_linear(n=40, d=25, noise=0.5, seed=2, n_test=7)
    assert data.name == "gaussian-linear" and data.X_train.shape == (40, 25) and data.y_test.shape == (7, 1)
    assert data.info["noise"] == 0.5 and data.info["beta"].shape == (25, 1)
    reference = synthetic_regression(40, 7, 25, 1, 0.5, "linear", 2)
    assert_same_dataset(data, reference)


# ------------------------------------------------------------------------------------------ label noise
def test_label_noise_fraction_is_exact_and_labels_uniform():
    data, fraction = toy_classification(), 0.3
    noisy = with_label_noise(data, fraction, seed=1)
    m = round(fraction * data.num_train)
    mask = noisy.noisy_labels
    assert mask.dtype == torch.bool and int(mask.sum()) == m == 6000
    assert torch.equal(noisy.y_train[~mask], data.y_train[~mask])
    assert torch.equal(noisy.y_test, data.y_test) and torch.equal(noisy.X_train, data.X_train)
    # Resampled labels are uniform on 10 classes: counts Binomial(m, 1/10), and a label changes w.p. 9/10.
    counts = torch.bincount(noisy.y_train[mask], minlength=10).double()
    assert torch.all((counts - m / 10).abs() < 5 * math.sqrt(m * 0.1 * 0.9)), counts
    changed = (noisy.y_train != data.y_train).double().mean().item()
    assert abs(changed - fraction * 0.9) < 5 * math.sqrt(0.27 * 0.73 / data.num_train)


def test_label_noise_extremes_seeding_and_composition():
    data = toy_classification(n_train=500)
    assert torch.equal(with_label_noise(data, 0.0).y_train, data.y_train)
    assert bool(with_label_noise(data, 1.0).noisy_labels.all())  # Zhang et al. (2017): all labels random
    a, b, c = (with_label_noise(data, 0.5, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)
    twice = with_label_noise(a, 0.5, seed=4)
    assert torch.equal(twice.noisy_labels, a.noisy_labels | c.noisy_labels)
    assert torch.equal(a.subset(100).noisy_labels, a.noisy_labels[:100])


# ----------------------------------------------------------------------------------------- Dataset
def test_dataset_properties_to_and_subset():
    data = synthetic_regression(n_train=30, n_test=10, in_features=4, out_features=2)
    assert data.train == (data.X_train, data.y_train) and data.test == (data.X_test, data.y_test)
    double = data.to(dtype=torch.float64)
    assert double.X_train.dtype == double.y_test.dtype == double.info["beta"].dtype == torch.float64
    torch.testing.assert_close(double.X_train.float(), data.X_train)
    labels = toy_classification(n_train=50).to("cpu", torch.float64)
    assert labels.X_train.dtype == torch.float64 and labels.y_train.dtype == torch.int64
    small = data.subset(12)
    assert torch.equal(small.X_train, data.X_train[:12]) and torch.equal(small.y_train, data.y_train[:12])
    assert small.X_test is data.X_test
    images = Dataset(
        torch.zeros(4, 2, 3),
        torch.zeros(4, dtype=torch.int64),
        torch.zeros(2, 2, 3),
        torch.zeros(2, dtype=torch.int64),
        "classification",
        3,
        "images",
    )
    assert images.in_features == 6


def test_standardize_uses_training_statistics():
    data = digits()
    scaled = standardize(data)
    X = data.X_train.double().numpy()
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std == 0] = 1.0  # constant pixels are only centred
    np.testing.assert_allclose(scaled.X_train.numpy(), (X - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled.X_test.numpy(), (data.X_test.double().numpy() - mean) / std, rtol=1e-5, atol=1e-5)
    varying = data.X_train.std(dim=0) > 0
    torch.testing.assert_close(scaled.X_train[:, varying].std(dim=0, correction=0), torch.ones(int(varying.sum())))
    assert torch.isfinite(scaled.X_test).all()


# ------------------------------------------------------------------------------------ loss, accuracy
def test_loss_for_and_accuracy():
    assert isinstance(loss_for("classification"), nn.CrossEntropyLoss)
    assert isinstance(loss_for("regression"), nn.MSELoss)
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 2])) == 0.5
    assert accuracy(logits, nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()) == 1.0


# ----------------------------------------------------------------------------------------- registry
def test_load_dataset_registry():
    assert set(DATASETS) == {"mnist1d", "digits", "synthetic-regression", "gaussian-linear"}
    assert load_dataset("mnist1d", n_train=50, n_test=20).X_train.shape == (50, 40)


def test_load_dataset_by_import_path_runs_the_users_function():
    own = load_dataset("tdlab.data.synthetic:gaussian_linear", n=20, d=5)
    assert_same_dataset(own, gaussian_linear(20, 5))
    with pytest.raises(ValueError, match="cannot import 'no_such_module:f'"):
        load_dataset("no_such_module:f")
    with pytest.raises(TypeError, match="returned a Tensor, expected a tdlab.data.Dataset"):
        load_dataset("torch:zeros", size=(2,))
    assert_same_dataset(load_dataset("digits", seed=2), digits(seed=2))
    assert_same_dataset(load_dataset("gaussian-linear", n=20, d=5), gaussian_linear(20, 5))
    data = load_dataset("synthetic-regression", standardize=True, n_train=100, in_features=3)
    torch.testing.assert_close(data.X_train.mean(dim=0), torch.zeros(3), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: load_dataset("cifar10"),
            "dataset: expected one of 'mnist1d', 'digits', 'synthetic-regression', 'gaussian-linear' or an import "
            "path 'package.module:function', got 'cifar10'",
        ),
        (lambda: synthetic_regression(teacher="cnn"), "teacher: expected one of 'linear', 'mlp', got 'cnn'"),
        (lambda: synthetic_regression(noise=-1.0), "noise: expected a non-negative number"),
        (lambda: synthetic_regression(n_train=0), "n_train: expected an integer >= 1, got 0"),
        (lambda: mnist1d(n_test=0), "n_test: expected a positive integer, got 0"),
        (lambda: digits(test_fraction=1.0), "test_fraction: expected a number in (0, 1), got 1.0"),
        (lambda: loss_for("ranking"), "task: expected one of 'classification', 'regression', got 'ranking'"),
        (
            lambda: with_label_noise(gaussian_linear(10, 2), 0.1),
            "dataset: label noise needs a classification",
        ),
        (
            lambda: with_label_noise(toy_classification(10), 1.5),
            "fraction: expected a number in [0, 1], got 1.5",
        ),
        (lambda: toy_classification(10).subset(11), "n_train: expected an integer in 1..10, got 11"),
        (lambda: accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64)), "targets: expected (3,)"),
        (
            lambda: Dataset(
                torch.zeros(2, 1), torch.zeros(2), torch.zeros(1, 1), torch.zeros(1), "classification", 2, "x"
            ),
            "y_train: expected int64 class labels",
        ),
        (
            lambda: Dataset(
                torch.zeros(2, 1), torch.zeros(2), torch.zeros(1, 1), torch.zeros(1), "regression", None, "x"
            ),
            "y_train: expected floating targets (n, out)",
        ),
        (
            lambda: Dataset(
                torch.zeros(2, 1),
                torch.tensor([0, 2]),
                torch.zeros(1, 1),
                torch.tensor([0]),
                "classification",
                2,
                "x",
            ),
            "y_train, y_test: expected labels in 0..1",
        ),
        (
            lambda: Dataset(
                torch.zeros(2, 1),
                torch.zeros(2, 1),
                torch.zeros(1, 1),
                torch.zeros(1, 1),
                "ranking",
                None,
                "x",
            ),
            "task: expected one of 'classification', 'regression', got 'ranking'",
        ),
        (
            lambda: Dataset(
                torch.zeros(2, 1),
                torch.zeros(2, 1),
                torch.zeros(1, 2),
                torch.zeros(1, 1),
                "regression",
                None,
                "x",
            ),
            "X_test, y_test: expected the feature and target shapes",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dataset_to_cuda_and_label_noise_on_cuda():
    data = toy_classification(n_train=1000)
    on_gpu = data.to("cuda")
    assert on_gpu.X_train.is_cuda and on_gpu.y_train.dtype == torch.int64
    noisy_gpu, noisy_cpu = with_label_noise(on_gpu, 0.2, seed=0), with_label_noise(data, 0.2, seed=0)
    assert torch.equal(noisy_gpu.y_train.cpu(), noisy_cpu.y_train)
    torch.testing.assert_close(standardize(on_gpu).X_train.cpu(), standardize(data).X_train)
