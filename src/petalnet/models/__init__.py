"""The networks by name, what a model needs besides its weights (InferenceSpec), and checkpoints."""
