# The course's "Let's code" CNN listing (shared/seed, slide "Let's code"), run with kernelnet.
# Changed from the listing: the imports (first block) and the dataset line (Fashion-MNIST from
# the Debian dataset folder, download=False). The test-accuracy evaluation after each epoch is a
# clearly marked addition at the end of the epoch loop. Options (environment variables, also
# additions): KN_EPOCHS (default 10), KN_SEED (default 0), KN_TRAIN_SUBSET (use the first N
# training images, for quick runs), KN_JSON (write per-epoch results to this file).
import kernelnet as torch
import kernelnet as torchvision
import kernelnet.nn as nn
import kernelnet.optim as optim
import kernelnet.nn.functional as F

# --- addition: run options and seed -------------------------------------------------------
import json, os, time
EPOCHS = int(os.environ.get("KN_EPOCHS", "10"))
torch.manual_seed(int(os.environ.get("KN_SEED", "0")))
# --- end addition ----------------------------------------------------------------------------

train_loader = torch.utils.data.DataLoader(torchvision.datasets.FashionMNIST('data', train=True, download=False, transform=torchvision.transforms.ToTensor()), batch_size=32, shuffle=True)

# --- addition: optional training subset for quick runs -------------------------------------
if os.environ.get("KN_TRAIN_SUBSET"):
    train_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train_loader.dataset, list(range(int(os.environ["KN_TRAIN_SUBSET"])))), batch_size=32, shuffle=True)
# --- end addition ----------------------------------------------------------------------------

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

# --- addition: test set and evaluation -------------------------------------------------------
test_loader = torch.utils.data.DataLoader(
    torchvision.datasets.FashionMNIST('data', train=False, download=False, transform=torchvision.transforms.ToTensor()),
    batch_size=1000, shuffle=False)

def evaluate():
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            pred = model(inputs).argmax(1)
            correct += int((pred == labels).sum().item())
            total += labels.shape[0]
    model.train()
    return 100.0 * correct / total

results = []
# --- end addition ----------------------------------------------------------------------------

# Define the loss and the optimizer
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)
# Train the model
nb_batch_to_print = 100
for epoch in range(10):  # loop over the dataset multiple times
    _t0 = time.perf_counter()  # addition
    running_loss = 0.0
    for i, data in enumerate(train_loader, 0):
        inputs, labels = data
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if i % nb_batch_to_print == nb_batch_to_print-1:    
            print('[%d, %5d] loss: %.3f' %
                    (epoch + 1, i + 1, running_loss / nb_batch_to_print))
            running_loss = 0.0
    # --- addition: per-epoch time and test accuracy ----------------------------------------
    _train_s = time.perf_counter() - _t0
    _acc = evaluate()
    results.append({"epoch": epoch + 1, "train_seconds": round(_train_s, 2), "test_accuracy": _acc})
    print('epoch %d: train %.1f s, test accuracy %.2f %%' % (epoch + 1, _train_s, _acc), flush=True)
    if os.environ.get("KN_JSON"):
        with open(os.environ["KN_JSON"], "w") as _f:
            json.dump(results, _f, indent=1)
    if epoch + 1 >= EPOCHS:
        break
    # --- end addition ----------------------------------------------------------------------

print('Finished Training')
