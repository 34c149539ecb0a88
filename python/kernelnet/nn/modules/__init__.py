from .module import Module
from .container import Sequential, ModuleList, ModuleDict, ParameterList
from .linear import Identity, Linear
from .conv import Conv2d
from .pooling import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
from .dropout import Dropout
from .flatten import Flatten, Unflatten
from .batchnorm import BatchNorm1d, BatchNorm2d
from .normalization import LayerNorm
from .sparse import Embedding
from .activation import ReLU, LeakyReLU, ELU, GELU, SiLU, Tanh, Sigmoid, Softplus, Softmax, LogSoftmax
from .loss import CrossEntropyLoss, NLLLoss, MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss
