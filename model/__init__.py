"""Python side of the model package (the Go package ignores this file).

- model.reference: the PyTorch reference of the seed model and its ONNX exporter
- model.ultralytics: the seed's modules registered with stock ultralytics
- model.train: training of the seed model (python -m model.train)
- model.quantize: static INT8 (QDQ) quantization of an ONNX export
- model.data: the synthetic dataset generator and the dataset checks
- model.peers: the runtimes a user could run the seed model in instead, timed (make bench-peers)

model/carafe holds the CARAFE kernels (C, CUDA, TensorRT) and their NumPy reference scripts.
Run everything from the repository root, e.g. ``/usr/bin/python3 -m model.reference.export --help``.
"""
