"""The VLAC critic: training labels, metrics, training, inference and evaluation."""
