"""kernelnet.utils.data: datasets, samplers and the DataLoader (PyTorch names and semantics)."""
from .dataset import Dataset, TensorDataset, Subset, ConcatDataset, random_split
from .sampler import Sampler, SequentialSampler, RandomSampler, BatchSampler
from .dataloader import DataLoader, default_collate, default_convert

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "Sampler",
           "SequentialSampler", "RandomSampler", "BatchSampler", "DataLoader", "default_collate",
           "default_convert"]
