"""Deployment: ONNX export, int8 quantization, magnitude pruning and an ONNX Runtime backend.

* :func:`ctxrec.deploy.export.export_model` writes an export folder (``ctxrec export``);
* :class:`ctxrec.deploy.onnx_runtime.OnnxRecommender` loads it and answers ``recommend(queries, k)``
  like the PyTorch model; :func:`ctxrec.deploy.onnx_runtime.load_recommender` picks the backend;
* :mod:`ctxrec.deploy.quantize` (int8) and :mod:`ctxrec.deploy.prune` (magnitude pruning).

Heavy imports (torch, onnx, onnxruntime) happen inside the functions that need them.
"""
