"""The networks petalnet can build, by name, importable without PyTorch (for the command line's checks
and help); models/networks.py builds them."""

MODEL_NAMES = ("alexnet_half", "alexnet_half_bn", "alexnet")
