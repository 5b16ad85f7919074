"""Datasets for the seed model: a synthetic YOLO-format generator (synth) and the dataset checks (check)."""
