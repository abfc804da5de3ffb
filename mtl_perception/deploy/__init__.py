"""Deployment: exported ONNX files and the inference engines that run them.

- `onnx_file`: what an exported file carries (the checkpoint's metadata, the
  export's own) and the checks before one is used.
- `export`: a model -> ONNX bytes, with a parity check against PyTorch
  (`python -m training export` is the command; the streaming core uses the same
  function to run a checkpoint on a non-torch backend).
- `engines`: ONNX Runtime (CPU, CUDA, TensorRT) and OpenVINO behind one call.
- `load`: a checkpoint or an exported file, whichever a path names.

Every engine package is optional (setup.py extras `onnx`, `openvino`,
`tensorrt`) and imported only when a backend asks for it.
"""
