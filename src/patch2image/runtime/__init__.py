"""Running a trained network outside training, as fast as the machine allows.

``precision`` (bfloat16 autocast or float32), ``export`` (the ONNX file), ``quantise`` (its int8
version), ``openvino_model`` (OpenVINO), ``backends`` (the registry of ways to run a model:
PyTorch, ONNX Runtime, OpenVINO), ``auto`` (the fastest of them chosen by measurement) and
``cache`` (where the per-machine choices and compiled models are kept).
"""
