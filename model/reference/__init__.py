"""PyTorch reference of the seed model (StarNet-S050 + FreqFusion RT-DETR) and its ONNX exporter.

Run everything with Debian's interpreter from the repository root, e.g.
``/usr/bin/python3 -m model.reference.export --help``.
"""
