"""Dense encoders: the local ONNX model and its build, plus remote embedding services."""
