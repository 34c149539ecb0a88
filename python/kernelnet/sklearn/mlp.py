"""MLPClassifier and MLPRegressor: scikit-learn's estimators, trained on kernelnet's kernels.

They subclass scikit-learn's own classes, so parameters, defaults, validation, label handling
(LabelBinarizer, string labels, multilabel), partial_fit/warm_start bookkeeping, early-stopping
split, scores and fitted attributes are scikit-learn's, unchanged. What is replaced is the
numerical work: the stochastic training loop (`_fit_stochastic`), the forward pass used by
predict/predict_proba/score (`_forward_pass_fast`) and the loss/gradient used by lbfgs
(`_backprop`) run on kernelnet's native kernels (see _base.MLPEngine), in float32.

The loop follows scikit-learn's `_fit_stochastic` step for step and draws its random numbers from
the same RandomState in the same order (initial weights, early-stopping split, per-epoch shuffle),
so a kernelnet fit retraces scikit-learn's up to float32 rounding.

Differences: computation is float32 whatever the input dtype (outputs are returned in the input's
dtype, as scikit-learn does); sparse input is rejected (convert with .toarray()); lbfgs runs
scipy's L-BFGS-B on our float32 loss and gradient. Extra parameter: `device` ('auto', 'cpu',
'cuda'); 'auto' is CUDA when available.
"""
import warnings
from numbers import Integral

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d, gen_batches, shuffle
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import validate_data

from .. import _cpu
from .._device import device as _Device
from ._base import MLPEngine, empty, to_device, to_host

_SMALL_MACS = 4_000_000  # per-layer multiply-adds per batch below which the fit runs on one thread
_DEVICE_CONSTRAINT = {"device": [StrOptions({"auto", "cpu", "cuda"}), str]}


class _KernelnetMLPMixin:
    """The parts shared by the classifier and the regressor."""

    # ------------------------------------------------------------------ helpers
    def _kn_device(self):
        try:
            return _Device(self.device)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: invalid device={self.device!r}: {e}") from None

    def _kn_engine(self, dev=None):
        """An engine holding the current coefs_/intercepts_."""
        eng = MLPEngine([c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]], self.activation,
                        self.out_activation_, dev or self._kn_device())
        eng.load(self.coefs_, self.intercepts_)
        return eng

    def _out_dtype(self):
        return self.coefs_[0].dtype if self.coefs_[0].dtype in (np.float32, np.float64) else np.float64

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------------ forward (predict, score)
    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=False, reset=False)
        eng = self._kn_engine()
        prev = None
        if eng.dev.type == "cpu" and X.shape[0] * max(c.size for c in self.coefs_) < 4 * _SMALL_MACS \
                and _cpu.num_threads() > 1:
            prev = _cpu.num_threads()  # small prediction: one thread (see _fit_stochastic)
            _cpu.set_num_threads(1)
        try:
            out = eng.predict_raw(X)
        finally:
            if prev is not None:
                _cpu.set_num_threads(prev)
        return out.astype(self._out_dtype(), copy=False)

    # ------------------------------------------------------------------ lbfgs: loss + gradient
    def _backprop(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads):
        # scipy's L-BFGS-B calls this once per evaluation with the current coefs_/intercepts_.
        cache = getattr(self, "_kn_lbfgs_cache", None)
        dev = self._kn_device()
        if cache is None or cache[0] is not X:
            xd = to_device(X, dev)
            yd = to_device(np.asarray(y, np.float32).reshape(X.shape[0], -1), dev)
            swd = None if sample_weight is None else to_device(sample_weight, dev)
            cache = self._kn_lbfgs_cache = (X, xd, yd, swd)
        _, xd, yd, swd = cache
        eng = self._kn_engine(dev)
        n = X.shape[0]
        acts, deltas_d = eng.buffers(n)
        grads = empty((eng.n_params,), dev)
        eng.forward(xd.data_ptr(), n, acts)
        lbuf = empty((1,), dev)
        eng.be.sk_output_loss(eng.out, acts[eng.L].data_ptr(), yd.data_ptr(), 0 if swd is None else swd.data_ptr(),
                              deltas_d[-1].data_ptr(), n, eng.units[-1], self._kn_eps(X.dtype), lbuf.data_ptr())
        eng.backward(xd.data_ptr(), n, acts, deltas_d, grads)
        sw_sum = float(n if sample_weight is None else np.sum(sample_weight))
        g = to_host(grads).astype(np.float64) / sw_sum
        sq = 0.0
        for i, c in enumerate(self.coefs_):
            o = eng.coef_off[i]
            g[o:o + c.size] += self.alpha * c.ravel() / sw_sum
            sq += float(np.dot(c.ravel(), c.ravel()))
        loss = (float(to_host(lbuf)[0]) + 0.5 * self.alpha * sq) / sw_sum
        cg, ig = [], []
        for i, c in enumerate(self.coefs_):
            o = eng.coef_off[i]
            cg.append(g[o:o + c.size].reshape(c.shape).astype(X.dtype))
            o = eng.icpt_off[i]
            ig.append(g[o:o + c.shape[1]].astype(X.dtype))
        return loss, cg, ig

    def _fit_lbfgs(self, *args, **kwargs):
        try:
            return super()._fit_lbfgs(*args, **kwargs)
        finally:
            self._kn_lbfgs_cache = None

    @staticmethod
    def _kn_eps(dtype):
        return float(np.finfo(dtype).eps)

    # ------------------------------------------------------------------ the stochastic loop
    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                        layer_units, incremental):
        dev = self._kn_device()
        if not incremental or not hasattr(self, "_optimizer"):
            # scikit-learn's optimizer objects keep the schedule (learning_rate, t, adaptive
            # decay, stopping messages); their state arrays live in _kn_opt_state.
            if self.solver == "sgd":
                self._optimizer = SGDOptimizer([], self.learning_rate_init, self.learning_rate, self.momentum,
                                               self.nesterovs_momentum, self.power_t)
            else:
                self._optimizer = AdamOptimizer([], self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)
            self._kn_opt_state = None
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            should_stratify = self._kn_is_classifier and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")
            if self._kn_is_classifier:
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        eng = MLPEngine(layer_units, self.activation, self.out_activation_, dev)
        eng.load(self.coefs_, self.intercepts_)
        be = eng.be
        n_out = layer_units[-1]
        d_in = layer_units[0]
        xd = to_device(X_train, dev)
        yd = to_device(np.asarray(y_train, np.float32).reshape(n_samples, n_out), dev)
        swd = None if sample_weight_train is None else to_device(sample_weight_train, dev)
        sw_host = None if sample_weight_train is None else np.asarray(sample_weight_train, np.float64)
        xv = None if X_val is None else to_device(X_val, dev)
        acts, deltas_d = eng.buffers(batch_size)
        xb = empty((batch_size, d_in), dev)
        yb = empty((batch_size, n_out), dev)
        swb = None if swd is None else empty((batch_size,), dev)
        grads = empty((eng.n_params,), dev)
        batches = list(gen_batches(n_samples, batch_size))
        loss_buf = empty((len(batches),), dev)
        sq_buf = empty((len(batches),), dev)
        st = self._kn_load_opt_state(eng)
        eps = self._kn_eps(X.dtype)
        adam = self.solver == "adam"
        opt = self._optimizer
        best = None  # device copy of the best parameters (early stopping)
        idx_dev = empty((n_samples,), dev, dtype=_i64())

        # Small layers (the course's digits MLP): one thread. A second thread cannot pay for its
        # wake-up on GEMMs of a few MFLOP, and on a busy machine every parallel region waits for
        # a descheduled thread (measured: 200x64x64 GEMM 0.03 ms on 1 thread, 30 ms on 2 under load).
        prev_threads = None
        macs = batch_size * max(a * b for a, b in zip(layer_units[:-1], layer_units[1:]))
        if dev.type == "cpu" and macs < _SMALL_MACS and _cpu.num_threads() > 1:
            prev_threads = _cpu.num_threads()
            _cpu.set_num_threads(1)
        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                    be_idx = to_device(sample_idx.astype(np.int64), dev, dtype=np.int64)
                    idx_dev = be_idx
                sw_sums, lens = [], []
                for bi, sl in enumerate(batches):
                    rows = sl.stop - sl.start
                    if self.shuffle:
                        ip = idx_dev.data_ptr() + 8 * sl.start
                        be.index_select(0, xb.data_ptr(), xd.data_ptr(), 1, n_samples, d_in, ip, rows)
                        be.index_select(0, yb.data_ptr(), yd.data_ptr(), 1, n_samples, n_out, ip, rows)
                        if swd is not None:
                            be.index_select(0, swb.data_ptr(), swd.data_ptr(), 1, n_samples, 1, ip, rows)
                        x_ptr, y_ptr = xb.data_ptr(), yb.data_ptr()
                        sw_ptr = 0 if swd is None else swb.data_ptr()
                        bidx = sample_idx[sl]
                    else:
                        x_ptr = xd.data_ptr() + 4 * sl.start * d_in
                        y_ptr = yd.data_ptr() + 4 * sl.start * n_out
                        sw_ptr = 0 if swd is None else swd.data_ptr() + 4 * sl.start
                        bidx = sl
                    sw_sum = float(rows) if sw_host is None else float(sw_host[bidx].sum())
                    sw_sums.append(sw_sum)
                    lens.append(rows)
                    eng.forward(x_ptr, rows, acts)
                    be.sk_output_loss(eng.out, acts[eng.L].data_ptr(), y_ptr, sw_ptr, deltas_d[-1].data_ptr(),
                                      rows, n_out, eps, loss_buf.data_ptr() + 4 * bi)
                    eng.backward(x_ptr, rows, acts, deltas_d, grads)
                    gscale = 1.0 / sw_sum if sw_sum != 0 else 0.0
                    sq_ptr = sq_buf.data_ptr() + 4 * bi
                    if adam:
                        opt.t += 1
                        opt.learning_rate = (opt.learning_rate_init * np.sqrt(1 - opt.beta_2 ** opt.t)
                                             / (1 - opt.beta_1 ** opt.t))
                        be.sk_adam_step(eng.params.data_ptr(), grads.data_ptr(), st[0].data_ptr(), st[1].data_ptr(),
                                        eng.n_params, eng.n_coef, gscale, self.alpha * gscale, float(opt.learning_rate),
                                        opt.beta_1, opt.beta_2, opt.epsilon, sq_ptr)
                    else:
                        be.sk_sgd_step(eng.params.data_ptr(), grads.data_ptr(), st[0].data_ptr(), eng.n_params,
                                       eng.n_coef, gscale, self.alpha * gscale, float(opt.learning_rate),
                                       opt.momentum, bool(opt.nesterov), sq_ptr)
                # batch_loss = (data + 0.5 alpha ||W||^2) / sw_sum; sklearn weights it by batch length
                data = to_host(loss_buf).astype(np.float64)
                sq = to_host(sq_buf).astype(np.float64)
                sw_arr = np.asarray(sw_sums)
                with np.errstate(divide="ignore", invalid="ignore"):
                    batch_loss = (data + 0.5 * self.alpha * sq) / sw_arr
                accumulated_loss = float(np.sum(batch_loss * np.asarray(lens)))
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / X_train.shape[0]
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                best = self._kn_update_no_improvement_count(early_stopping, eng, xv, y_val, sample_weight_val, best)
                opt.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    if opt.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if prev_threads is not None:
                _cpu.set_num_threads(prev_threads)

        dtype = self.coefs_[0].dtype
        self.coefs_, self.intercepts_ = eng.export(dtype)
        self._kn_save_opt_state(st)
        if early_stopping:
            if best is not None:
                self._best_coefs, self._best_intercepts = eng.export(dtype, best)
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _kn_update_no_improvement_count(self, early_stopping, eng, xv, y_val, sw_val, best):
        if early_stopping:
            out = eng.predict_device(xv).astype(self._out_dtype(), copy=False)
            val_score = self._kn_score_outputs(out, y_val, sw_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                best = empty((eng.n_params,), eng.dev)
                eng.be.copy_strided(0, best.data_ptr(), eng.params.data_ptr(), [eng.n_params], [1])
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        return best

    # optimizer state: device buffers during a fit, float32 numpy between fits (pickle, partial_fit)
    def _kn_load_opt_state(self, eng):
        n = eng.n_params
        k = 2 if self.solver == "adam" else 1
        host = getattr(self, "_kn_opt_state", None)
        if host is None or len(host) != k or any(h.size != n for h in host):
            host = [np.zeros(n, np.float32) for _ in range(k)]
        return [to_device(h, eng.dev) for h in host]

    def _kn_save_opt_state(self, st):
        self._kn_opt_state = [to_host(t) for t in st]


def _i64():
    from .. import _dtype as D
    return D.int64


class MLPClassifier(_KernelnetMLPMixin, _SkMLPClassifier):
    """scikit-learn's MLPClassifier trained on kernelnet's native kernels (CPU or CUDA).

    Same parameters, defaults and attributes as sklearn.neural_network.MLPClassifier, plus
    `device` ('auto', 'cpu' or 'cuda').
    """
    _parameter_constraints: dict = {**_SkMLPClassifier._parameter_constraints, **_DEVICE_CONSTRAINT}
    _kn_is_classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device="auto"):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
                         power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.device = device

    def _validate_input(self, X, y, incremental, reset):
        # scikit-learn's, with sparse input rejected (our kernels are dense)
        X, y = validate_data(self, X, y, accept_sparse=False, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _kn_score_outputs(self, out, y_val, sw_val):
        if self.n_outputs_ == 1:
            out = out.ravel()
        pred = self._label_binarizer.inverse_transform(out)
        return accuracy_score(y_val, pred, sample_weight=sw_val)


class MLPRegressor(_KernelnetMLPMixin, _SkMLPRegressor):
    """scikit-learn's MLPRegressor trained on kernelnet's native kernels (CPU or CUDA).

    Same parameters, defaults and attributes as sklearn.neural_network.MLPRegressor, plus
    `device` ('auto', 'cpu' or 'cuda').
    """
    _parameter_constraints: dict = {**_SkMLPRegressor._parameter_constraints, **_DEVICE_CONSTRAINT}
    _kn_is_classifier = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device="auto"):
        super().__init__(loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
                         alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter, shuffle=shuffle,
                         random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
                         momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.device = device

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=False, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _kn_score_outputs(self, out, y_val, sw_val):
        if out.shape[1] == 1:
            out = out.ravel()
        if not np.isfinite(out).all():
            return np.nan
        return r2_score(y_val, out, sample_weight=sw_val)
