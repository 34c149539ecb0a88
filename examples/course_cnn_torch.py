# Reference run: the course's "Let's code" listing in PyTorch itself, on the same Fashion-MNIST
# files (read with kernelnet's IDX reader because torchvision is not installed here), with the
# same additions as examples/course_cnn.py (per-epoch test accuracy, KN_EPOCHS, KN_SEED, KN_JSON,
# KN_TRAIN_SUBSET), so the two runs can be compared side by side.
import json, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from kernelnet.datasets import FashionMNIST  # noqa: E402  (IDX files -> numpy, no kernelnet tensors needed)

EPOCHS = int(os.environ.get("KN_EPOCHS", "10"))
torch.manual_seed(int(os.environ.get("KN_SEED", "0")))


def tensors(train):
    ds = FashionMNIST('data', train=train)
    x = torch.from_numpy(ds._images).float().div(255).unsqueeze(1)  # what ToTensor() gives
    return torch.utils.data.TensorDataset(x, torch.from_numpy(ds._labels))


train_set = tensors(True)
if os.environ.get("KN_TRAIN_SUBSET"):
    train_set = torch.utils.data.Subset(train_set, range(int(os.environ["KN_TRAIN_SUBSET"])))
train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
test_loader = torch.utils.data.DataLoader(tensors(False), batch_size=1000)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return x


model = Net()
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)
results = []
for epoch in range(EPOCHS):
    t0 = time.perf_counter()
    running_loss = 0.0
    for i, (inputs, labels) in enumerate(train_loader, 0):
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if i % 100 == 99:
            print('[%d, %5d] loss: %.3f' % (epoch + 1, i + 1, running_loss / 100))
            running_loss = 0.0
    train_s = time.perf_counter() - t0
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            correct += int((model(inputs).argmax(1) == labels).sum())
            total += labels.shape[0]
    model.train()
    acc = 100.0 * correct / total
    results.append({"epoch": epoch + 1, "train_seconds": round(train_s, 2), "test_accuracy": acc})
    print('epoch %d: train %.1f s, test accuracy %.2f %%' % (epoch + 1, train_s, acc), flush=True)
    if os.environ.get("KN_JSON"):
        with open(os.environ["KN_JSON"], "w") as f:
            json.dump(results, f, indent=1)
print('Finished Training')
