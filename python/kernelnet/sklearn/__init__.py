"""scikit-learn estimators that train on kernelnet's native kernels (CPU or CUDA).

    from kernelnet.sklearn import MLPClassifier   # drop-in for sklearn.neural_network.MLPClassifier

MLPClassifier / MLPRegressor: scikit-learn's MLPs (same parameters, attributes and behaviour, plus
`device`), the training loop in fused native kernels. Perceptron: Rosenblatt's rule, one-vs-rest,
with scikit-learn's Perceptron interface. Requires scikit-learn.
"""
from .mlp import MLPClassifier, MLPRegressor
from .perceptron import Perceptron

__all__ = ["MLPClassifier", "MLPRegressor", "Perceptron"]
