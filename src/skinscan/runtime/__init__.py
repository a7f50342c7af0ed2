"""Running an exported model: decoding, the ONNX Runtime engine, the input checks, the result type and
`skinscan predict` (no torch, no SciPy, no scikit-learn, no matplotlib)."""
