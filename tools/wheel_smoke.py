import importlib.resources

import torch

import captum_rise
from captum_rise import RISE

print(captum_rise.__version__, captum_rise.__file__)
assert importlib.resources.files("captum_rise").joinpath("py.typed").is_file()
m = torch.nn.Linear(12, 3)
x = torch.rand(2, 12)
s = RISE(lambda v: torch.softmax(m(v), 1)).attribute(x, target=0, n_masks=64, seed=0)
print(tuple(s.shape))
