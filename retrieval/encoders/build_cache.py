"""A per-user cache of finished model builds, so a new data folder does not build the model again.

A build of multilingual-e5-small takes about half a minute of both cores; every fresh data folder
(a new deployment, a test's temp folder, `search-eval` on a copy) would otherwise pay it again.
Finished builds are kept under ``$KB_MODEL_CACHE`` (default ``$XDG_CACHE_HOME/kb-hybrid-search/
models``, ``~/.cache`` without it; ``off`` disables the cache), one folder per key: the model id,
the quantisation, the build format, and a digest of the source's paths, sizes and modification
times (cheap: no hashing of weights). A source file that changes gets a new key.

Entries are written and restored by hard links where the file system allows (instant, no second
copy on disk; model files are never modified in place, only replaced), by copies otherwise, each
into a temp sibling renamed into place, so a reader never sees half an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path

ENV_VAR = "KB_MODEL_CACHE"
_DISABLED = {"off", "none", "0", "false"}


def cache_root() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured.lower() in _DISABLED:
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "kb-hybrid-search" / "models"


def cache_key(model_id: str, quantization: str, format_version: int, source: Path) -> str:
    """The entry name for a build of `source` (a checkpoint folder or weight file)."""
    digest = hashlib.sha256(f"{model_id}\0{quantization}\0{format_version}\0".encode())
    resolved = source.resolve()
    files = sorted(p for p in resolved.iterdir() if p.is_file()) if resolved.is_dir() else [resolved]
    for path in files:
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    safe_id = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_id)
    return f"{safe_id}-{digest.hexdigest()[:16]}"


def _link_tree(src: Path, dst: Path) -> None:
    """`dst` as a copy of the flat folder `src`: hard links where possible, copies otherwise."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if not item.is_file():
            continue
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)
    os.chmod(dst, 0o755)


def _publish(src: Path, target: Path) -> bool:
    """Copy `src` to `target` through a temp sibling; False when `target` appeared meanwhile."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _link_tree(src, tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process published the same entry first (rename onto a non-empty folder).
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def store(key: str, built_dir: Path) -> Path | None:
    """Keep a finished build under `key`; its folder, or None (cache off, or not writable)."""
    root = cache_root()
    if root is None:
        return None
    target = root / key
    if target.exists():
        return target
    with contextlib.suppress(OSError):
        _publish(built_dir, target)
    return target if target.exists() else None


def cached(key: str) -> Path | None:
    """The cache folder of `key` if an entry exists (the caller checks it is complete)."""
    root = cache_root()
    if root is None:
        return None
    entry = root / key
    return entry if entry.is_dir() else None


def restore(entry: Path, out_dir: Path) -> None:
    """Put a cached build at `out_dir`, replacing whatever is there, atomically."""
    staged = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _link_tree(entry, staged)
        old: Path | None = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            out_dir.rename(old)
        staged.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
