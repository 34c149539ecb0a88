"""kernelnet.nn: modules, parameters, initialisations and functional forms (PyTorch's API)."""
from .parameter import Parameter, Buffer
from . import init
from . import functional
from .modules import (Module, Sequential, ModuleList, ModuleDict, ParameterList, Identity, Linear, Conv2d,
                      MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout, Flatten, Unflatten, BatchNorm1d,
                      BatchNorm2d, LayerNorm, Embedding, ReLU, LeakyReLU, ELU, GELU, SiLU, Tanh, Sigmoid, Softplus,
                      Softmax, LogSoftmax, CrossEntropyLoss, NLLLoss, MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss)
from . import modules
from . import utils
