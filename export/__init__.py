"""Export: ONNX, OpenVINO, parity checks and the bundle writer."""
