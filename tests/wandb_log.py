"""Read a W&B transaction log (``run-*.wandb``) as records (tests/ is on sys.path via its conftest).

The file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of chunks, each chunk with a
7-byte header (CRC-32, length, type FULL/FIRST/MIDDLE/LAST). A record longer than a block's rest is split
across blocks, so searching the raw bytes for a key can miss it when a block boundary cuts the key.
wandb 0.31 ships no Python reader; this one follows the format wandb's Go writer uses.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks_to_records(data: bytes) -> list[bytes]:
    """Reassemble a log's records; a torn tail (a chunk cut by the file's end) is left out."""
    if data[:4] != b":W&B":
        raise ValueError(f"not a W&B transaction log: starts with {data[:7]!r}")
    out: list[bytes] = []
    pos, pending = HEADER, bytearray()
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the writer pads a block's tail shorter than a chunk header
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        body = data[pos + HEADER : pos + HEADER + length]
        if len(body) < length:
            break
        if zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"chunk at byte {pos}: CRC mismatch")
        pos += HEADER + length
        if kind == FULL:
            out.append(bytes(body))
        elif kind == FIRST:
            pending = bytearray(body)
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            out.append(bytes(pending + body))
            pending = bytearray()
        elif kind == 0 and length == 0:  # zero padding
            pos += left - HEADER
        else:
            raise ValueError(f"chunk at byte {pos}: unknown type {kind}")
    return out


def searchable(path: Path) -> bytes:
    """A file's bytes to search for a secret: a W&B log's records are added whole (a block boundary may
    cut a string in two in the file itself)."""
    data = Path(path).read_bytes()
    if Path(path).suffix == ".wandb" and data[:4] == b":W&B":
        data += b"".join(chunks_to_records(data))
    return data


def records(path: Path) -> list[pb.Record]:
    """Every record of the run's transaction log, parsed."""
    out = []
    for raw in chunks_to_records(Path(path).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        out.append(rec)
    return out


def closed(path: Path, timeout: float = 60.0) -> list[pb.Record]:
    """The log's records once its exit record is on disk.

    ``wandb.finish()`` can return while wandb's service is still writing the log's last records (a run's
    tables and artifacts came after the check in one CI run): poll for the exit record, then read.
    """
    deadline = time.monotonic() + timeout
    while True:
        recs = records(path) if Path(path).exists() else []
        done = any(r.WhichOneof("record_type") == "exit" for r in recs)
        if done or time.monotonic() > deadline:
            if not done:
                kinds = [r.WhichOneof("record_type") for r in recs[-5:]]
                raise AssertionError(f"{path}: no exit record after {timeout:.0f} s (last records: {kinds})")
            return recs
        time.sleep(0.2)


def logged_keys(path: Path) -> set[str]:
    """Keys of every history row and summary update the run wrote (nested keys joined by "/")."""
    keys: set[str] = set()
    for rec in closed(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in rec.history.item)
        elif kind == "summary":
            keys.update(item.key or "/".join(item.nested_key) for item in rec.summary.update)
    return keys


def run_record(path: Path) -> pb.RunRecord:
    """The run's own record (name, group, tags, ...): the last one the log holds."""
    runs = [rec.run for rec in closed(path) if rec.WhichOneof("record_type") == "run"]
    if not runs:
        raise AssertionError(f"{path}: no run record")
    return runs[-1]


def artifacts(path: Path) -> list[pb.ArtifactRecord]:
    """Artifacts the run logged (with their aliases)."""
    return [rec.artifact for rec in closed(path) if rec.WhichOneof("record_type") == "artifact"]
