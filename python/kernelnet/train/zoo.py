"""The course's models by name: ``build_model("mlp", input_shape=(1, 8, 8), num_classes=10)``.

- perceptron: one linear layer (Rosenblatt's neuron, one output per class). Trained here with
  cross-entropy and gradient descent, i.e. a softmax/logistic perceptron, not the 0/1 step rule.
- mlp: the course's scikit-learn MLP, hidden layers (64, 32, 16) with ReLU.
- cnn: the course's "Let's code" network: conv(32, 3x3) - ReLU - conv(64, 3x3) - ReLU -
  max-pool 2 - dropout 0.25 - flatten - linear(128) - ReLU - dropout 0.5 - linear(classes).
  On 28x28 images fc1 has the listing's 9216 inputs; other sizes get 64*((H-4)//2)*((W-4)//2).
- lstm, gru: reserved names for the recurrent chapter (need nn.LSTM / nn.GRU).
"""
import math


def _nn():
    import kernelnet.nn as nn
    return nn


def _flat(input_shape):
    return int(math.prod(input_shape))


def perceptron(input_shape, num_classes):
    nn = _nn()
    return nn.Sequential(nn.Flatten(), nn.Linear(_flat(input_shape), num_classes))


def mlp(input_shape, num_classes, hidden=(64, 32, 16)):
    nn = _nn()
    layers, width = [nn.Flatten()], _flat(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _course_cnn_class():
    nn = _nn()
    import kernelnet.nn.functional as F

    class CourseCNN(nn.Module):
        """The course's Net (slide "Let's code"), with the image size as a parameter."""

        def __init__(self, in_channels=1, num_classes=10, image_size=(28, 28)):
            super().__init__()
            h, w = image_size
            if h < 6 or w < 6:
                raise ValueError(f"cnn: images must be at least 6x6 (two 3x3 convs and a 2x2 pool), got {h}x{w}")
            self.conv1 = nn.Conv2d(in_channels, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(64 * ((h - 4) // 2) * ((w - 4) // 2), 128)  # 9216 for 28x28
            self.fc2 = nn.Linear(128, num_classes)

        def forward(self, x):
            import kernelnet as kn
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = kn.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = self.dropout2(x)
            return self.fc2(x)

    return CourseCNN


def cnn(input_shape, num_classes):
    if len(input_shape) != 3:
        raise ValueError(f"cnn: needs image inputs [C, H, W], got input shape {tuple(input_shape)} "
                         "(use --model mlp for tabular data)")
    c, h, w = input_shape
    return _course_cnn_class()(c, num_classes, (h, w))


def _recurrent(kind):
    def build(input_shape, num_classes, hidden_size=128):
        nn = _nn()
        if not hasattr(nn, kind.upper()):
            raise NotImplementedError(f"model {kind!r}: kernelnet.nn.{kind.upper()} is not available yet "
                                      "(recurrent layers come with the RNN chapter)")
        raise NotImplementedError(f"model {kind!r}: the recurrent zoo entry is not written yet")
    build.__name__ = kind
    return build


MODELS = {
    "perceptron": perceptron,
    "mlp": mlp,
    "cnn": cnn,
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
}


def available_models():
    return sorted(MODELS)


def build_model(name, input_shape, num_classes, **kwargs):
    """A fresh model of the zoo. ``input_shape`` excludes the batch dimension."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose one of {', '.join(available_models())})")
    return MODELS[name](tuple(int(s) for s in input_shape), int(num_classes), **kwargs)
