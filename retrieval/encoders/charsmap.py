"""Build a SentencePiece ``precompiled_charsmap`` (what HF's ``Precompiled`` normaliser reads).

The blob is ``u32 trie_bytes``, a darts-clone double-array trie over the UTF-8 bytes of the
source strings, then the replacement strings, each ending in NUL; a key's trie value is the byte
offset of its replacement. Lookups (darts ``commonPrefixSearch``) walk the array like this:

* a unit is a little-endian u32; ``label = unit & 0x800000FF``, ``has_leaf = bit 8``,
  ``offset = (unit >> 10) << ((unit & 0x200) >> 6)``, ``value = unit & 0x7FFFFFFF``;
* from position ``p`` with byte ``c`` the child is at ``(p ^ offset(p)) ^ c`` and must carry
  label ``c``; a node with ``has_leaf`` keeps its value at ``p ^ offset(p)`` (label 0 slot).

Children of different nodes never share a base, so a lookup landing on a unit with the right
label always reached a real child of that node (darts-clone keeps the same invariant).
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

_HAS_LEAF = 1 << 8
_VALUE_FLAG = 1 << 31
_MAX_PLAIN_OFFSET = 1 << 21


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    value: int | None = None


def _offset_bits(offset: int) -> int:
    """Encode a (position XOR base) distance in a unit's offset field."""
    if offset < _MAX_PLAIN_OFFSET:
        return offset << 10
    if offset % 256 or offset >= 1 << 29:
        raise ValueError(f"double-array offset {offset} cannot be encoded")
    return (offset << 2) | (1 << 9)


def _build_trie(keys: Mapping[bytes, int]) -> _Node:
    root = _Node()
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"charsmap keys must be non-empty and NUL-free: {key!r}")
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value
    return root


def double_array(keys: Mapping[bytes, int]) -> list[int]:
    """darts-clone units for ``keys`` (byte strings -> 31-bit values)."""
    root = _build_trie(keys)
    units: list[int] = [0]
    used = bytearray(b"\x01")  # positions taken by a node or a value slot; 0 is the root
    bases: set[int] = set()
    queue: deque[tuple[int, _Node]] = deque([(0, root)])
    free: list[int] = []  # sorted free positions below len(used): the holes worth trying first
    while queue:
        pos, node = queue.popleft()
        labels = sorted(node.children)
        slots = ([0] if node.value is not None else []) + labels
        if not slots:
            continue
        # First fit: the lowest base whose slots are all free and which no other node uses. Only
        # free positions can hold the first slot, so candidates are the holes, then fresh space.
        candidates = itertools.chain(free, itertools.count(len(used)))
        for candidate in candidates:
            base = candidate ^ slots[0]
            if base not in bases and all(base ^ s >= len(used) or not used[base ^ s] for s in slots[1:]):
                break
        bases.add(base)
        top = max(base ^ s for s in slots) + 1
        if top > len(used):
            free.extend(range(len(used), top))
            used.extend(bytes(top - len(used)))
            units.extend([0] * (top - len(units)))
        for s in slots:
            used[base ^ s] = 1
            free.pop(bisect.bisect_left(free, base ^ s))
        unit = units[pos] | _offset_bits(pos ^ base)
        if node.value is not None:
            unit |= _HAS_LEAF
            if not 0 <= node.value < _VALUE_FLAG:
                raise ValueError(f"value {node.value} does not fit in 31 bits")
            units[base] = node.value | _VALUE_FLAG
        units[pos] = unit
        for label in labels:
            child = base ^ label
            units[child] = label
            queue.append((child, node.children[label]))
    return units


def precompiled_charsmap(mapping: Mapping[str, str]) -> bytes:
    """The ``precompiled_charsmap`` blob that rewrites each key of ``mapping`` to its value.

    Keys are matched by HF ``Precompiled`` at the start of a grapheme (and, when that fails, of
    each character); an empty value deletes the key.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for source, target in mapping.items():
        if "\0" in target:
            raise ValueError(f"replacement for {source!r} contains NUL")
        if target not in where:
            where[target] = len(strings)
            strings += target.encode("utf-8") + b"\0"
        keys[source.encode("utf-8")] = where[target]
    units = double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def lookup(blob: bytes, key: str) -> list[str]:
    """Replacements of every prefix of ``key`` found in ``blob``, shortest first (darts search)."""
    (size,) = struct.unpack_from("<I", blob)
    units = struct.unpack_from(f"<{size // 4}I", blob, 4)
    strings = blob[4 + size :]

    def offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    found: list[str] = []
    pos = offset(units[0])
    for byte in key.encode("utf-8"):
        pos ^= byte
        if pos >= len(units) or units[pos] & (_VALUE_FLAG | 0xFF) != byte:
            break
        unit = units[pos]
        pos ^= offset(unit)
        if unit & _HAS_LEAF:
            start = units[pos] & (_VALUE_FLAG - 1)
            found.append(strings[start : strings.index(b"\0", start)].decode("utf-8"))
    return found
