"""Character-level LSTM language model on any text file, with sampling.

    PYTHONPATH=python python examples/char_lm.py [examples/data/sonnets.txt] [--steps 600] [--hidden 256]

Embedding -> LSTM -> Linear over the character vocabulary, trained on random windows with Adam
and gradient-norm clipping (truncated BPTT of --seq steps). Every --sample-every steps it prints
the loss and a sample drawn from the model, so the samples can be watched improving.
The shipped text (examples/data/sonnets.txt) is a few of Shakespeare's sonnets (public domain).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))  # a source checkout
import kernelnet as kn  # noqa: E402
import kernelnet.nn as nn  # noqa: E402
import kernelnet.nn.functional as F  # noqa: E402

DEFAULT_TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sonnets.txt")


class CharLM(nn.Module):
    def __init__(self, vocab, embed=32, hidden=256, layers=1):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx, state=None):
        out, state = self.rnn(self.embed(idx), state)
        B, T, H = out.shape
        return self.head(out.reshape(B * T, H)).reshape(B, T, -1), state


def sample(model, chars, start, n, temperature=0.8, rng=None):
    rng = rng or np.random.default_rng()
    stoi = {c: i for i, c in enumerate(chars)}
    model.eval()
    out = list(start)
    with kn.no_grad():
        idx = kn.tensor([[stoi.get(c, 0) for c in start]], dtype=kn.int64)
        logits, state = model(idx)
        for _ in range(n):
            z = logits[0, -1].numpy().astype(np.float64) / temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            c = int(rng.choice(len(p), p=p))
            out.append(chars[c])
            logits, state = model(kn.tensor([[c]], dtype=kn.int64), state)
    model.train()
    return "".join(out)


def train(text, steps=600, seq=64, batch=32, hidden=256, lr=3e-3, clip=1.0, sample_every=100, seed=0,
          log=print):
    """Returns (model, chars, losses)."""
    kn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], dtype=np.int64)
    model = CharLM(len(chars), hidden=hidden)
    opt = kn.optim.Adam(model.parameters(), lr=lr)
    losses = []
    t0 = time.time()
    for step in range(1, steps + 1):
        starts = rng.integers(0, len(data) - seq - 1, size=batch)
        x = np.stack([data[s:s + seq] for s in starts])
        y = np.stack([data[s + 1:s + seq + 1] for s in starts])
        logits, _ = model(kn.tensor(x, dtype=kn.int64))
        loss = F.cross_entropy(logits.reshape(batch * seq, len(chars)), kn.tensor(y.reshape(-1), dtype=kn.int64))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss.item()))
        if sample_every and (step % sample_every == 0 or step == 1):
            log(f"step {step:5d}  loss {np.mean(losses[-sample_every:]):.3f}  ({time.time() - t0:.0f} s)")
            log("  sample: " + repr(sample(model, chars, "Shall ", 120, rng=rng)))
    return model, chars, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", nargs="?", default=DEFAULT_TEXT)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sample-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with open(a.text, encoding="utf-8") as f:
        text = f.read()
    model, chars, _ = train(text, a.steps, a.seq, a.batch, a.hidden, a.lr, sample_every=a.sample_every,
                            seed=a.seed)
    print("\nfinal sample:\n" + sample(model, chars, "Shall ", 400))


if __name__ == "__main__":
    main()
