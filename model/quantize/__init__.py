"""Static INT8 (QDQ) quantization of a stardetr/ultralytics RT-DETR ONNX export; see __main__.py."""
