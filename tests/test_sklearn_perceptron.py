"""kernelnet.sklearn.Perceptron: the native epoch kernel against a NumPy float64 transcription of
scikit-learn's _plain_sgd (perceptron loss, constant rate), and the estimator against
scikit-learn's Perceptron on the behaviours users rely on."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import linear_model as sklm  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402

from kernelnet import _cpu  # noqa: E402
from kernelnet.sklearn import Perceptron  # noqa: E402


def _reference_epoch(X, Y, order, sw, cwp, cwn, W, b, eta, decay, l1_step, u, q, fit_intercept):
    """scikit-learn's per-sample SGD step for loss='perceptron', in float64 (weights unscaled)."""
    W, b = W.astype(np.float64).copy(), b.astype(np.float64).copy()
    q = None if q is None else q.astype(np.float64).copy()
    K = W.shape[0]
    loss = np.zeros(K)
    for k in range(K):
        uk = u
        for i in order:
            p = W[k] @ X[i] + b[k]
            y = Y[i, k]
            z = p * y
            if z <= 0:
                loss[k] -= z
            W[k] *= decay
            if z <= 0:
                upd = eta * y * (cwp[k] if y > 0 else cwn[k]) * sw[i]
                W[k] += upd * X[i]
                if fit_intercept:
                    b[k] += upd
            if l1_step:
                uk += l1_step
                z0 = W[k].copy()
                pos, neg = z0 > 0, z0 < 0
                W[k][pos] = np.maximum(0, z0[pos] - (uk + q[k][pos]))
                W[k][neg] = np.minimum(0, z0[neg] + (uk - q[k][neg]))
                q[k] += W[k] - z0
    return W, b, loss


@pytest.mark.parametrize("penalty", ["none", "l2", "l1", "elasticnet"])
@pytest.mark.parametrize("K", [1, 3])
def test_epoch_kernel_matches_reference(penalty, K):
    rng = np.random.RandomState(K)
    n, d = 37, 9
    X = rng.randn(n, d).astype(np.float32)
    Y = np.where(rng.rand(n, K) > 0.5, 1.0, -1.0).astype(np.float32)
    order = rng.permutation(n)[:31].astype(np.int64)  # a subset: validation samples are skipped
    sw = rng.uniform(0.5, 1.5, n).astype(np.float32)
    cwp = rng.uniform(0.5, 2, K).astype(np.float32)
    cwn = np.ones(K, np.float32)
    W = (rng.randn(K, d) * 0.1).astype(np.float32)
    b = (rng.randn(K) * 0.1).astype(np.float32)
    eta, alpha, l1_ratio = 0.5, 0.01, 0.3
    decay = {"none": 1.0, "l2": 1 - eta * alpha, "l1": 1.0, "elasticnet": 1 - (1 - l1_ratio) * eta * alpha}[penalty]
    l1_step = {"none": 0.0, "l2": 0.0, "l1": eta * alpha, "elasticnet": l1_ratio * eta * alpha}[penalty]
    q = np.zeros((K, d), np.float32) if l1_step else None
    W_ref, b_ref, loss_ref = _reference_epoch(X, Y, order, sw, cwp, cwn, W, b, eta, decay, l1_step, 0.02, q, True)
    active = np.ones(K, np.uint8)
    loss = np.zeros(K, np.float32)
    _cpu.sk_perceptron_epoch(X.ctypes.data, n, d, Y.ctypes.data, order.ctypes.data, len(order), sw.ctypes.data,
                             cwp.ctypes.data, cwn.ctypes.data, W.ctypes.data, b.ctypes.data, active.ctypes.data, K,
                             eta, decay, l1_step, 0.02, 0 if q is None else q.ctypes.data, True, loss.ctypes.data, 1.0)
    np.testing.assert_allclose(W, W_ref, atol=2e-4)
    np.testing.assert_allclose(b, b_ref, atol=2e-4)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-3, atol=1e-3)


def test_epoch_kernel_skips_inactive_and_checks_indices():
    X = np.ones((4, 2), np.float32)
    Y = -np.ones((4, 2), np.float32)
    W = np.zeros((2, 2), np.float32)
    b = np.zeros(2, np.float32)
    one = np.ones(2, np.float32)
    active = np.array([1, 0], np.uint8)
    loss = np.zeros(2, np.float32)
    order = np.arange(4, dtype=np.int64)
    args = lambda o: (X.ctypes.data, 4, 2, Y.ctypes.data, o.ctypes.data, 4, 0, one.ctypes.data, one.ctypes.data,  # noqa: E731
                      W.ctypes.data, b.ctypes.data, active.ctypes.data, 2, 1.0, 1.0, 0.0, 0.0, 0, True,
                      loss.ctypes.data, 1.0)
    _cpu.sk_perceptron_epoch(*args(order))
    assert (W[1] == 0).all() and b[1] == 0 and (W[0] != 0).all()
    bad = np.array([0, 1, 2, 4], np.int64)
    with pytest.raises(ValueError, match="out of range"):
        _cpu.sk_perceptron_epoch(*args(bad))


def test_digits_accuracy_like_sklearn():
    X, y = load_digits(return_X_y=True)
    accs_kn, accs_sk = [], []
    for rs in range(3):
        Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=rs)
        accs_kn.append(Perceptron(random_state=rs).fit(Xtr, ytr).score(Xte, yte))
        accs_sk.append(sklm.Perceptron(random_state=rs).fit(Xtr, ytr).score(Xte, yte))
    assert np.mean(accs_kn) >= np.mean(accs_sk) - 0.03
    assert min(accs_kn) > 0.88


def test_attributes_shapes_and_string_labels():
    X, y = load_digits(return_X_y=True)
    names = np.array(list("abcdefghij"))[y]
    m = Perceptron(random_state=0).fit(X, names)
    s = sklm.Perceptron(random_state=0).fit(X, names)
    np.testing.assert_array_equal(m.classes_, s.classes_)
    assert m.coef_.shape == s.coef_.shape == (10, 64) and m.coef_.dtype == s.coef_.dtype
    assert m.intercept_.shape == (10,)
    assert isinstance(m.n_iter_, int) and 1 <= m.n_iter_ <= 1000
    assert m.t_ == m.n_iter_ * len(X) + 1
    df = m.decision_function(X)
    assert df.shape == (len(X), 10) and df.dtype == np.float64
    np.testing.assert_allclose(df, X @ m.coef_.T + m.intercept_, rtol=1e-4, atol=1e-2)
    assert m.predict(X).dtype == s.predict(X).dtype
    assert m.score(X, names) > 0.9
    # binary: one weight vector, decision_function 1-d, positive class = classes_[1]
    Xb, yb = make_classification(n_samples=200, n_features=5, random_state=0)
    mb = Perceptron(random_state=0).fit(Xb, yb)
    assert mb.coef_.shape == (1, 5) and mb.intercept_.shape == (1,)
    assert mb.decision_function(Xb).shape == (200,)
    assert mb.score(Xb, yb) > 0.8


def test_partial_fit_warm_start_early_stopping_class_weight():
    X, y = load_digits(return_X_y=True)
    m = Perceptron(random_state=0)
    for s in range(0, 1000, 250):
        m.partial_fit(X[s:s + 250], y[s:s + 250], classes=np.unique(y))
    assert m.n_iter_ == 1 and m.score(X, y) > 0.8
    w = Perceptron(max_iter=2, warm_start=True, tol=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w.fit(X, y)
        c1 = w.coef_.copy()
        w.fit(X, y)
    assert not np.allclose(c1, w.coef_)
    es = Perceptron(early_stopping=True, n_iter_no_change=2, random_state=0).fit(X, y)
    assert es.n_iter_ < 1000 and es.score(X, y) > 0.75  # sklearn: 0.86-0.95 over seeds
    cw = Perceptron(class_weight="balanced", random_state=0).fit(X, y)
    assert cw.score(X, y) > 0.85
    with pytest.raises(ValueError, match="balanced"):
        Perceptron(class_weight="balanced").partial_fit(X, y, classes=np.unique(y))


def test_penalties_and_convergence_warning():
    X, y = load_digits(return_X_y=True)
    for pen in ["l2", "l1", "elasticnet"]:
        m = Perceptron(penalty=pen, alpha=1e-4, random_state=0).fit(X / 16, y)
        assert m.score(X / 16, y) > 0.8
    l1 = Perceptron(penalty="l1", alpha=1e-2, random_state=0, max_iter=20, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        l1.fit(X / 16, y)
    assert (l1.coef_ == 0).mean() > 0.2  # L1 makes weights sparse
    with pytest.warns(ConvergenceWarning):
        Perceptron(max_iter=1, random_state=0).fit(X, y)


def test_clone_pickle_gridsearch():
    X, y = load_digits(return_X_y=True)
    m = Perceptron(random_state=0).fit(X, y)
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "coef_")
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    gs = GridSearchCV(Perceptron(random_state=0), {"eta0": [0.1, 1.0]}, cv=2).fit(X, y)
    assert gs.best_params_["eta0"] in (0.1, 1.0)
    Xn = X.astype(float).copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Perceptron().fit(Xn, y)


def test_sparse_input_matches_sklearn():
    """scikit-learn moves the intercept 100x slower on sparse input; densifying it here must not
    change the fitted model (it did: intercept [1, -4, -1] against [0.01, -0.03, -0.01] on iris)."""
    import scipy.sparse as sp
    from sklearn.datasets import load_iris
    from sklearn.linear_model import Perceptron as SkPerceptron
    X, y = load_iris(return_X_y=True)
    kw = dict(shuffle=False, max_iter=30, tol=None)
    ref = SkPerceptron(**kw).fit(sp.csr_matrix(X), y)
    got = Perceptron(**kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, atol=1e-6)
    np.testing.assert_allclose(got.coef_, ref.coef_, atol=1e-4)
    dense = Perceptron(**kw).fit(X, y)
    np.testing.assert_allclose(dense.intercept_, SkPerceptron(**kw).fit(X, y).intercept_, atol=1e-6)
