"""The machine's matrix-multiply ceiling in ONNX Runtime: INT8 (u8 x s8) and FP32, 1 and 2 threads.

Run: ``uv run search-eval bench gemm``

One GEMM the size of an encoder feed-forward layer over a batch of 32 x 221 tokens
(7,072 x 512 times 512 x 2,048), median of 15 runs. It bounds what any encoder graph can reach
here: m3e-small needs about 25 MOP per token (4 layers of QKV, output, two FFN matrices).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

M, K, N = 7072, 512, 2048


def _model(path: Path, integer: bool) -> None:
    rng = np.random.default_rng(0)
    if integer:
        w = rng.integers(-127, 127, (K, N), dtype=np.int8)
        a_type, y_type, op = TensorProto.UINT8, TensorProto.INT32, "MatMulInteger"
    else:
        w = rng.standard_normal((K, N)).astype(np.float32)
        a_type, y_type, op = TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "W"], ["Y"])],
        "gemm",
        [helper.make_tensor_value_info("A", a_type, [M, K])],
        [helper.make_tensor_value_info("Y", y_type, [M, N])],
        [numpy_helper.from_array(w, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def main(argv: Sequence[str] | None = None) -> None:
    """Print GOPS for each type and thread count."""
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    rng = np.random.default_rng(1)
    inputs = {
        True: rng.integers(0, 255, (M, K), dtype=np.uint8),
        False: rng.standard_normal((M, K)).astype(np.float32),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for integer in (True, False):
            path = Path(tmp) / f"gemm-{integer}.onnx"
            _model(path, integer)
            for threads in (1, 2):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                feed = {"A": inputs[integer]}
                for _ in range(3):
                    session.run(None, feed)
                times = []
                for _ in range(15):
                    t0 = time.perf_counter()
                    session.run(None, feed)
                    times.append(time.perf_counter() - t0)
                t = statistics.median(times)
                kind = "int8 u8xs8" if integer else "fp32"
                print(f"{kind:10s} {threads} threads: {t * 1e3:6.1f} ms  {2 * M * K * N / t / 1e9:6.0f} GOPS")


if __name__ == "__main__":
    main()
