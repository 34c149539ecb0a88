"""Perceptron: Rosenblatt's learning rule on kernelnet's native kernel, scikit-learn's interface.

Subclasses sklearn.linear_model.Perceptron, so parameters, defaults, validation, classes_,
class_weight, partial_fit, warm_start and the fitted attributes (coef_, intercept_, n_iter_, t_,
classes_) behave as scikit-learn's. The training epochs run in the native kernel
`sk_perceptron_epoch` (csrc/cpu/sklearn_perceptron.cpp): for each sample, for each one-vs-rest
class k with y_k in {-1, +1},

    if y_k * (w_k . x + b_k) <= 0:   w_k += eta0 * y_k * x,   b_k += eta0 * y_k

which is the course's w += eta * (y - yhat) * x. All classes are trained in one pass over the
data (one thread per class group). Stopping per class as scikit-learn's SGD: tol on the epoch's
summed loss (or on the validation accuracy with early_stopping) for n_iter_no_change epochs.

Differences from scikit-learn: the per-epoch shuffle uses NumPy's RandomState, not the Cython
dataset's generator, so individual weights differ while the accuracy behaves the same; float32
arithmetic; sparse input is densified (with scikit-learn's slower intercept updates for it); n_jobs is ignored (threads are native). The epoch kernel is
sequential by nature and runs on the CPU.
"""
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import Perceptron as _SkPerceptron
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _cpu

MAX_INT = np.iinfo(np.int32).max
_PENALTY = {None: 0, "none": 0, "l1": 1, "l2": 2, "elasticnet": 3}


class Perceptron(_SkPerceptron):
    """scikit-learn's Perceptron trained with kernelnet's native perceptron kernel."""

    def _fit_binary(self, X, y, alpha, sample_weight, learning_rate, max_iter):
        cw = self._expanded_class_weight
        rs = check_random_state(self.random_state)
        validation_mask = self._make_validation_split(np.where(y == self.classes_[1], 1.0, -1.0),
                                                      sample_mask=sample_weight > 0)
        Y = np.where(y == self.classes_[1], 1.0, -1.0).astype(np.float32)[:, None]
        W = np.asarray(self.coef_, np.float32).reshape(1, -1).copy()
        b = np.asarray(self.intercept_, np.float32).reshape(1).copy()
        n_iter = self._kn_train(X, Y, W, b, alpha, max_iter, sample_weight, np.array([cw[1]], np.float32),
                                np.array([cw[0]], np.float32), validation_mask, rs.randint(MAX_INT))
        self.t_ += n_iter * X.shape[0]
        self.n_iter_ = n_iter
        self.coef_ = W.astype(X.dtype)
        self.intercept_ = b.astype(X.dtype)

    def _fit_multiclass(self, X, y, alpha, learning_rate, sample_weight, max_iter):
        K = len(self.classes_)
        validation_mask = self._make_validation_split(y, sample_mask=sample_weight > 0)
        rs = check_random_state(self.random_state)
        Y = np.where(y[:, None] == self.classes_[None, :], 1.0, -1.0).astype(np.float32)
        W = np.asarray(self.coef_, np.float32).reshape(K, -1).copy()
        b = np.asarray(self.intercept_, np.float32).reshape(K).copy()
        n_iter = self._kn_train(X, Y, W, b, alpha, max_iter, sample_weight,
                                np.asarray(self._expanded_class_weight, np.float32), np.ones(K, np.float32),
                                validation_mask, rs.randint(MAX_INT))
        self.t_ += n_iter * X.shape[0]
        self.n_iter_ = n_iter
        self.coef_ = W.astype(X.dtype)
        self.intercept_ = b.astype(X.dtype)

    # ------------------------------------------------------------------ the epoch loop
    def _kn_train(self, X, Y, W, b, alpha, max_iter, sample_weight, cw_pos, cw_neg, validation_mask, seed):
        """Trains all K one-vs-rest problems in place (W: K x d, b: K); returns max epochs run."""
        # scikit-learn moves the intercept 100x slower on sparse input (SPARSE_INTERCEPT_DECAY):
        # densifying must not change the fitted model
        intercept_decay = 0.01 if sp.issparse(X) else 1.0
        if sp.issparse(X):
            X = X.toarray()
        X = np.ascontiguousarray(X, np.float32)
        n, d = X.shape
        K = Y.shape[1]
        Y = np.ascontiguousarray(Y)
        sw = np.ascontiguousarray(sample_weight, np.float32)
        train_idx = np.flatnonzero(~validation_mask).astype(np.int64)
        val_idx = np.flatnonzero(validation_mask)
        train_count = train_idx.size
        penalty = _PENALTY[self.penalty if self.penalty is None else str(self.penalty).lower()]
        eta = float(self.eta0)
        l1_ratio = {0: 0.0, 1: 1.0, 2: 0.0, 3: float(self.l1_ratio)}[penalty]
        decay = max(0.0, 1.0 - (1.0 - l1_ratio) * eta * alpha) if penalty >= 2 else 1.0
        l1_step = l1_ratio * eta * alpha if penalty in (1, 3) else 0.0
        q = np.zeros((K, d), np.float32) if l1_step else None
        u = 0.0
        tol = self.tol if self.tol is not None else -np.inf
        active = np.ones(K, np.uint8)
        n_iter = np.zeros(K, np.int64)
        no_improve = np.zeros(K, np.int64)
        best_loss = np.full(K, np.inf)
        best_score = np.full(K, -np.inf)
        loss = np.zeros(K, np.float32)
        rng = np.random.RandomState(seed)
        order = train_idx.copy()
        t0 = time.time()
        for epoch in range(max_iter):
            if self.verbose:
                print("-- Epoch %d" % (epoch + 1))
            if self.shuffle:
                rng.shuffle(order)
            _cpu.sk_perceptron_epoch(X.ctypes.data, n, d, Y.ctypes.data, order.ctypes.data, train_count,
                                     sw.ctypes.data, cw_pos.ctypes.data, cw_neg.ctypes.data, W.ctypes.data,
                                     b.ctypes.data, active.ctypes.data, K, eta, decay, l1_step, u,
                                     0 if q is None else q.ctypes.data, bool(self.fit_intercept), loss.ctypes.data,
                                     intercept_decay)
            u += l1_step * train_count
            was_active = active.astype(bool)
            n_iter[was_active] = epoch + 1
            if self.verbose:
                for k in np.flatnonzero(was_active):
                    print("Norm: %.2f, NNZs: %d, Bias: %.6f, T: %d, Avg. loss: %f"
                          % (np.linalg.norm(W[k]), np.count_nonzero(W[k]), b[k], train_count * (epoch + 1),
                             loss[k] / max(train_count, 1)))
                print("Total training time: %.2f seconds." % (time.time() - t0))
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError("Floating-point under-/overflow occurred at epoch #%d. Scaling input data with "
                                 "StandardScaler or MinMaxScaler might help." % (epoch + 1))
            if self.early_stopping:
                scores = X[val_idx] @ W.T + b
                pred = np.where(scores > 0, 1.0, -1.0)
                wv = sw[val_idx].astype(np.float64)
                score = ((pred == Y[val_idx]) * wv[:, None]).sum(0) / wv.sum()
                worse = score < best_score + tol if tol > -np.inf else np.zeros(K, bool)
                best_score = np.maximum(best_score, score)
            else:
                lk = loss.astype(np.float64)
                worse = lk > best_loss - tol * train_count if tol > -np.inf else np.zeros(K, bool)
                best_loss = np.minimum(best_loss, lk)
            no_improve = np.where(worse, no_improve + 1, 0)
            stop = was_active & (no_improve >= self.n_iter_no_change)
            if stop.any():
                active[stop] = 0
                if self.verbose:
                    print("Convergence after %d epochs took %.2f seconds" % (epoch + 1, time.time() - t0))
            if not active.any():
                break
        return int(n_iter.max())

    # ------------------------------------------------------------------ decision function
    def decision_function(self, X):
        """Scores X @ coef_.T + intercept_ computed by kernelnet's SGEMM (bias in its epilogue)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        if sp.issparse(X):
            X = X.toarray()
        out_dtype = np.result_type(X.dtype, self.coef_.dtype)
        Xf = np.ascontiguousarray(X, np.float32)
        Wf = np.ascontiguousarray(self.coef_, np.float32)
        bf = np.ascontiguousarray(np.broadcast_to(self.intercept_, (Wf.shape[0],)), np.float32)
        n, d = Xf.shape
        K = Wf.shape[0]
        out = np.empty((n, K), np.float32)
        if n:
            # out = X @ W^T + b: W is stored K x d, so op(B) = W^T is the transposed operand
            _cpu.sgemm(1, False, True, n, K, d, 1.0, Xf.ctypes.data, d, 0, Wf.ctypes.data, d, 0, 0.0,
                       out.ctypes.data, K, 0, bf.ctypes.data, 1, 0)
        out = out.astype(out_dtype, copy=False)
        return out.ravel() if K == 1 else out
