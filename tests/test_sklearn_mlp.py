"""kernelnet.sklearn.MLPClassifier / MLPRegressor against scikit-learn itself.

Our loop draws the same random numbers as scikit-learn's (init, split, shuffles), so with the
same random_state a fit must retrace scikit-learn's up to float32 rounding: loss curves and
weights are compared directly, which checks the native forward, backward, losses and optimizers.
"""
import io
import pickle
import re
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from kernelnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*a, **k)


def _both(cls_kn, cls_sk, X, y, **params):
    kn = _quiet(cls_kn(device="cpu", **params).fit, X, y)
    sk = _quiet(cls_sk(**params).fit, X, y)
    return kn, sk


def _assert_same_fit(kn, sk, rtol=2e-3, atol=2e-4):
    assert kn.n_iter_ == sk.n_iter_
    assert kn.t_ == sk.t_
    np.testing.assert_allclose(kn.loss_curve_, sk.loss_curve_, rtol=rtol)
    for a, b in zip(kn.coefs_ + kn.intercepts_, sk.coefs_ + sk.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_classifier_retraces_sklearn(digits, activation, solver):
    X, y = digits
    kn, sk = _both(MLPClassifier, sknn.MLPClassifier, X, y, hidden_layer_sizes=(20, 11), activation=activation,
                   solver=solver, max_iter=4, random_state=0, learning_rate_init=0.01)
    _assert_same_fit(kn, sk)
    assert kn.out_activation_ == sk.out_activation_ == "softmax"
    np.testing.assert_allclose(kn.predict_proba(X), sk.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("schedule,nesterov", [("constant", False), ("invscaling", True), ("adaptive", True)])
def test_sgd_schedules_retrace_sklearn(digits, schedule, nesterov):
    X, y = digits
    kn, sk = _both(MLPClassifier, sknn.MLPClassifier, X, y, hidden_layer_sizes=(12,), solver="sgd",
                   learning_rate=schedule, nesterovs_momentum=nesterov, momentum=0.8, max_iter=6,
                   batch_size=64, random_state=1, alpha=0.01, learning_rate_init=0.05)
    _assert_same_fit(kn, sk)
    assert kn._optimizer.learning_rate == pytest.approx(sk._optimizer.learning_rate)


def test_binary_and_multilabel_match_sklearn():
    X, y = make_classification(n_samples=150, n_features=7, random_state=0)
    kn, sk = _both(MLPClassifier, sknn.MLPClassifier, X, y, hidden_layer_sizes=(9,), max_iter=5, random_state=0)
    _assert_same_fit(kn, sk)
    assert kn.out_activation_ == "logistic"
    p = kn.predict_proba(X)
    assert p.shape == (150, 2)
    Y = np.stack([y, 1 - y, (X[:, 0] > 0).astype(int)], axis=1)
    kn, sk = _both(MLPClassifier, sknn.MLPClassifier, X, Y, hidden_layer_sizes=(9,), max_iter=5, random_state=0)
    _assert_same_fit(kn, sk)
    assert kn.predict(X).shape == (150, 3)
    np.testing.assert_array_equal(kn.predict(X), sk.predict(X))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_retraces_sklearn(loss):
    X, y = make_regression(n_samples=120, n_features=6, n_targets=2, noise=0.1, random_state=0)
    X = X / 3.0
    y = y / 100.0
    if loss == "poisson":
        y = np.exp(y[:, 0])
    kn, sk = _both(MLPRegressor, sknn.MLPRegressor, X, y, loss=loss, hidden_layer_sizes=(10,), max_iter=5,
                   random_state=0, learning_rate_init=0.01)
    _assert_same_fit(kn, sk)
    assert kn.predict(X).shape == sk.predict(X).shape
    np.testing.assert_allclose(kn.predict(X), sk.predict(X), rtol=1e-3, atol=1e-4)
    assert kn.score(X, y) == pytest.approx(sk.score(X, y), abs=1e-4)


def test_sample_weight_matches_sklearn(digits):
    X, y = digits
    sw = np.random.RandomState(0).uniform(0.2, 2.0, len(y))
    kn = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, device="cpu").fit, X, y, sw)
    sk = _quiet(sknn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit, X, y, sw)
    _assert_same_fit(kn, sk)


def test_output_shapes_dtypes_and_string_labels(digits):
    X, y = digits
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    m = _quiet(MLPClassifier(hidden_layer_sizes=(10,), max_iter=3, random_state=0, device="cpu").fit, X, labels)
    s = _quiet(sknn.MLPClassifier(hidden_layer_sizes=(10,), max_iter=3, random_state=0).fit, X, labels)
    np.testing.assert_array_equal(m.classes_, s.classes_)
    pred = m.predict(X)
    assert pred.dtype == s.predict(X).dtype and pred.shape == (len(X),)
    assert set(pred) <= set(labels)
    p = m.predict_proba(X)
    assert p.shape == (len(X), 10) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(m.predict_log_proba(X), np.log(p), rtol=1e-6)
    assert m.n_features_in_ == X.shape[1] and m.n_layers_ == 3 and m.n_outputs_ == 10
    # float32 input keeps float32 outputs and weights, as scikit-learn does
    m32 = _quiet(MLPClassifier(hidden_layer_sizes=(10,), max_iter=2, random_state=0, device="cpu").fit,
                 X.astype(np.float32), y)
    assert m32.coefs_[0].dtype == np.float32 and m32.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert 0.0 <= m.score(X, labels) <= 1.0


def test_partial_fit_matches_sklearn(digits):
    X, y = digits
    kn = MLPClassifier(hidden_layer_sizes=(10,), random_state=0, device="cpu")
    sk = sknn.MLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    classes = np.unique(y)
    for s in range(0, 400, 100):
        kn.partial_fit(X[s:s + 100], y[s:s + 100], classes=classes)
        sk.partial_fit(X[s:s + 100], y[s:s + 100], classes=classes)
    _assert_same_fit(kn, sk)
    with pytest.raises(ValueError, match="classes"):
        kn.partial_fit(X[:10], y[:10] + 20)
    r = MLPRegressor(hidden_layer_sizes=(5,), random_state=0, device="cpu")
    r.partial_fit(X, y.astype(float))
    r.partial_fit(X, y.astype(float))
    assert r.n_iter_ == 1 and len(r.loss_curve_) == 2


def test_warm_start_matches_sklearn(digits):
    X, y = digits
    kn = MLPClassifier(hidden_layer_sizes=(10,), max_iter=2, warm_start=True, random_state=0, device="cpu")
    sk = sknn.MLPClassifier(hidden_layer_sizes=(10,), max_iter=2, warm_start=True, random_state=0)
    for _ in range(2):
        _quiet(kn.fit, X, y)
        _quiet(sk.fit, X, y)
    assert len(kn.loss_curve_) == 4
    _assert_same_fit(kn, sk)
    with pytest.raises(ValueError, match="warm_start"):
        kn.fit(X[y < 5], y[y < 5])


def test_early_stopping_matches_sklearn(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(16,), early_stopping=True, validation_fraction=0.2, max_iter=60,
                  n_iter_no_change=3, random_state=0, learning_rate_init=0.01)
    kn = _quiet(MLPClassifier(device="cpu", **params).fit, X, y)
    sk = _quiet(sknn.MLPClassifier(**params).fit, X, y)
    assert kn.n_iter_ == sk.n_iter_ < 60
    np.testing.assert_allclose(kn.validation_scores_, sk.validation_scores_, atol=1.5 / 80)
    assert kn.best_validation_score_ == max(kn.validation_scores_)
    assert kn.best_loss_ is None
    np.testing.assert_allclose(kn.coefs_[0], sk.coefs_[0], atol=5e-4)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))


def test_verbose_and_convergence_warning(digits):
    X, y = digits
    out_kn, out_sk = io.StringIO(), io.StringIO()
    with redirect_stdout(out_kn), pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, verbose=True, random_state=0, device="cpu").fit(X, y)
    with redirect_stdout(out_sk), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sknn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, verbose=True, random_state=0).fit(X, y)
    pat = r"Iteration (\d+), loss = (\d+\.\d{8})"
    a, b = re.findall(pat, out_kn.getvalue()), re.findall(pat, out_sk.getvalue())
    assert [i for i, _ in a] == ["1", "2", "3"] == [i for i, _ in b]
    np.testing.assert_allclose([float(v) for _, v in a], [float(v) for _, v in b], rtol=1e-3)
    # convergence by tol: stops early with the same message as scikit-learn
    out = io.StringIO()
    with redirect_stdout(out):
        m = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, tol=0.5, n_iter_no_change=2, verbose=True,
                          random_state=0, device="cpu").fit(X, y)
    assert m.n_iter_ < 500 and "did not improve more than tol=0.500000 for 2 consecutive epochs" in out.getvalue()


def test_clone_pickle_and_params(digits):
    X, y = digits
    m = _quiet(MLPClassifier(hidden_layer_sizes=(7,), max_iter=3, random_state=0, device="cpu").fit, X, y)
    c = clone(m)
    assert c.get_params() == m.get_params() and c.get_params()["device"] == "cpu"
    assert not hasattr(c, "coefs_")
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict_proba(X), m.predict_proba(X))
    assert all(isinstance(w, np.ndarray) for w in m2.coefs_ + m2.intercepts_)
    m2.partial_fit(X, y)  # optimizer state survives the pickle
    assert m2.n_iter_ == 1 and len(m2.loss_curve_) == 4


def test_pipeline_gridsearch_cross_val(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(10,), max_iter=30, random_state=0, learning_rate_init=0.02)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(device="cpu", **params))
    scores = _quiet(cross_val_score, pipe, X, y, cv=3)
    ref = _quiet(cross_val_score, make_pipeline(StandardScaler(), sknn.MLPClassifier(**params)), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    np.testing.assert_allclose(scores, ref, atol=0.02)
    gs = GridSearchCV(MLPClassifier(max_iter=10, random_state=0, device="cpu"),
                      {"hidden_layer_sizes": [(5,), (20,)], "alpha": [1e-4, 1e-2]}, cv=2)
    _quiet(gs.fit, X, y)
    assert gs.best_params_["hidden_layer_sizes"] in [(5,), (20,)]
    assert gs.best_estimator_.predict(X).shape == (len(X),)


def test_input_validation(digits):
    X, y = digits
    scipy_sparse = pytest.importorskip("scipy.sparse")
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier(device="cpu").fit(Xn, y)
    with pytest.raises(TypeError, match="[Ss]parse"):
        MLPClassifier(device="cpu").fit(scipy_sparse.csr_matrix(X), y)
    m = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, device="cpu").fit, X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :10])
    with pytest.raises(ValueError):
        MLPClassifier(activation="softsign").fit(X, y)
    with pytest.raises(ValueError, match="device"):
        MLPClassifier(device="tpu").fit(X, y)
    with pytest.raises(ValueError, match="inconsistent|samples"):
        MLPClassifier(device="cpu").fit(X, y[:-1])


def test_cuda_request_without_gpu_is_clear(digits):
    import kernelnet
    if kernelnet.cuda.is_available():
        pytest.skip("a GPU is present")
    X, y = digits
    with pytest.raises(RuntimeError, match="cuda"):
        MLPClassifier(device="cuda", max_iter=1).fit(X, y)


def test_lbfgs_on_our_gradient(digits):
    X, y = digits
    kn, sk = _both(MLPClassifier, sknn.MLPClassifier, X, y, hidden_layer_sizes=(10,), solver="lbfgs", max_iter=15,
                   random_state=0)
    assert kn.loss_ == pytest.approx(sk.loss_, rel=0.05)
    assert kn.score(X, y) == pytest.approx(sk.score(X, y), abs=0.03)


@pytest.mark.slow
def test_course_listing_accuracy():
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    mlp = MLPClassifier(hidden_layer_sizes=(64, 32, 16), activation="relu", random_state=0, device="cpu")
    mlp.fit(X_train, y_train)
    assert mlp.score(X_test, y_test) >= 0.95


def _cuda_ok():
    import kernelnet
    return kernelnet.cuda.is_available()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ok(), reason="No GPU")
@pytest.mark.parametrize("solver,activation", [("adam", "relu"), ("sgd", "tanh")])
def test_cuda_retraces_sklearn(digits, solver, activation):
    X, y = digits
    params = dict(hidden_layer_sizes=(20, 11), activation=activation, solver=solver, max_iter=4, random_state=0,
                  learning_rate_init=0.01)
    kn = _quiet(MLPClassifier(device="cuda", **params).fit, X, y)
    sk = _quiet(sknn.MLPClassifier(**params).fit, X, y)
    _assert_same_fit(kn, sk)
    np.testing.assert_allclose(kn.predict_proba(X), sk.predict_proba(X), atol=1e-4)
    es = dict(params, early_stopping=True, max_iter=8)
    kn = _quiet(MLPClassifier(device="cuda", **es).fit, X, y)
    sk = _quiet(sknn.MLPClassifier(**es).fit, X, y)
    np.testing.assert_allclose(kn.validation_scores_, sk.validation_scores_, atol=1.5 / 40)
    Xr, yr = make_regression(n_samples=120, n_features=6, noise=0.1, random_state=0)
    kn, sk = _both(MLPRegressor, sknn.MLPRegressor, Xr / 3, yr / 100, hidden_layer_sizes=(10,), max_iter=5,
                   random_state=0, learning_rate_init=0.01)
    kn2 = _quiet(MLPRegressor(device="cuda", hidden_layer_sizes=(10,), max_iter=5, random_state=0,
                              learning_rate_init=0.01).fit, Xr / 3, yr / 100)
    np.testing.assert_allclose(kn2.loss_curve_, sk.loss_curve_, rtol=2e-3)
