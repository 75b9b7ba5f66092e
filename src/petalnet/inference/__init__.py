"""Checkpoint -> predictions: the scoring pass, Classifier, ONNX, and the predict/evaluate/export commands."""
