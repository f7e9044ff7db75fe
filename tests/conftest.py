import os

import pytest
import torch

# Tests run in the quick profile, quietly, on the CPU, whatever machine they are on.
os.environ.setdefault("DCPRIVACY_PROFILE", "quick")
os.environ.setdefault("DCPRIVACY_PROGRESS", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def fashion():
    from dcprivacy.data import load_dataset
    return load_dataset("fashionmnist", download=False)
