"""Files that are safe to read and whole when written.

- **Safe**: :func:`load` reads a ``.pt`` file with ``torch.load(..., weights_only=True)``: only
  tensors and plain values (dicts, lists, tuples, numbers, strings) come back; a file that holds
  anything else — e.g. a crafted pickle that would run code — is refused with :class:`UnsafeFileError`.
  Everything the package writes is such a plain dict (see ``to_dict``/``from_dict`` of its results).
- **Whole**: :func:`save`, :func:`write_text` and :func:`write_json` write to a temporary file in
  the target's folder and rename it into place (``os.replace``, atomic on POSIX): a kill leaves the
  previous file or the new one, never half of one.
- **Paired**: :func:`save_with_record` writes a result (``.pt``) and its JSON record so that a
  stale record never sits beside a new result.

Every error here is a ``ValueError`` with a one-line message that names the file: the command line
prints it and exits with status 2.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch


class FileError(ValueError):
    """A file could not be read or written (the message names it and says what to do)."""


class UnsafeFileError(FileError):
    """A file holds objects other than tensors and plain values: it is not loaded."""


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _tmp_path(path: Path) -> Path:
    """A new empty file beside ``path``, with the permissions a plain ``open(path, "w")`` would give."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def _write(path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise FileError(f"{path} is a directory: give a file name")
    tmp = _tmp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save(obj, path) -> Path:
    """``torch.save(obj, path)`` atomically. ``obj`` should hold only tensors and plain values."""
    return _write(path, lambda tmp: torch.save(obj, tmp))


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _write(path, lambda tmp: tmp.write_text(text))


def write_json(path, obj, *, default=None) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def load(path, *, what: str = "file") -> dict:
    """Read a ``.pt`` file written by this package: tensors and plain values only (``weights_only=True``).

    ``what`` names the file's role in error messages (e.g. ``"synthetic set"``)."""
    path = Path(path)
    if not path.exists():
        raise FileError(f"{what} {path}: no such file")
    if path.is_dir():
        raise FileError(f"{what} {path} is a directory, not a file")
    try:
        with warnings.catch_warnings():  # a file of another pickle protocol: refused below, without a warning
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if any(w in str(e) for w in ("GLOBAL", "Unsupported global", "Unsupported class")):
            raise UnsafeFileError(f"{what} {path} holds objects other than tensors and plain values; refusing to "
                                  f"load it (it could run code). Only load files written by dcprivacy") from None
        raise FileError(f"{what} {path} is damaged or not a dcprivacy file ({_short(e)}); write it again") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise FileError(f"{what} {path} is truncated, damaged or not a dcprivacy file ({_short(e)}); "
                        f"write it again") from None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:120]}" if text else type(e).__name__


def expect(d, kind: str, path, what: str) -> dict:
    """Check that ``d`` (from :func:`load`) is a dict of format ``kind``; return it."""
    if not isinstance(d, dict):
        raise FileError(f"{what} {path} holds a {type(d).__name__}, not a dcprivacy {kind}")
    fmt = d.get("format", kind)  # files written before the format tag: judged by their fields
    if fmt != kind:
        raise FileError(f"{what} {path} is a {fmt}, not a {kind}")
    return d


def check_out_path(path, *, suffix: str | None = None, what: str = "--out") -> Path:
    """Validate an output file before any work: its suffix, not a directory, a folder we can write
    (created if missing). Raises :class:`FileError` with a one-line message."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise FileError(f"{what} {path}: must end in {suffix}" +
                        (f" (a {path.suffix} record is written beside it)" if path.suffix == ".json" else ""))
    if path.is_dir() or str(path).endswith(os.sep):
        raise FileError(f"{what} {path} is a directory: give a file name, e.g. {path / ('result' + (suffix or ''))}")
    check_out_dir(path.parent, what=what)
    return path


def check_out_dir(folder, *, what: str = "--out") -> Path:
    """Create ``folder`` if missing and check that files can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FileError(f"{what}: {folder} exists and is not a folder") from None
    except OSError as e:
        raise FileError(f"{what}: cannot create the folder {folder} ({e.strerror or _short(e)})") from None
    if not folder.is_dir():
        raise FileError(f"{what}: {folder} is not a folder")
    try:
        _tmp_path(folder / "probe").unlink()
    except OSError as e:
        raise FileError(f"{what}: cannot write in {folder} ({e.strerror or _short(e)})") from None
    return folder


def save_with_record(obj, path, record: dict, record_path=None, *, default=None) -> tuple[Path, Path]:
    """Write a result ``obj`` to ``path`` and its JSON ``record`` beside it (default: ``path`` with
    ``.json``), as a pair, after the work.

    Both go to temporary files first; then the old record is removed, the result renamed into place,
    and the record last. A kill at any point leaves either the old pair, the old result alone, the new
    result alone, or the new pair — never an old record beside a new result. The record carries the
    result's SHA-256 (``sha256``) so that a reader can check the two belong together."""
    path = Path(path)
    record_path = path.with_suffix(".json") if record_path is None else Path(record_path)
    if record_path.resolve() == path.resolve():
        raise FileError(f"{path}: the result and its JSON record would be the same file")
    path.parent.mkdir(parents=True, exist_ok=True)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_pt, tmp_json = _tmp_path(path), _tmp_path(record_path)
    try:
        torch.save(obj, tmp_pt)
        with open(tmp_pt, "rb+") as f:
            os.fsync(f.fileno())
        digest = sha256(tmp_pt)
        tmp_json.write_text(json.dumps({**record, "sha256": digest}, indent=2, default=default) + "\n")
        with open(tmp_json, "rb+") as f:
            os.fsync(f.fileno())
        record_path.unlink(missing_ok=True)  # no stale record survives beside the new result
        os.replace(tmp_pt, path)
        os.replace(tmp_json, record_path)
    except BaseException:
        tmp_pt.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    return path, record_path


def sha256(path) -> str:
    """The SHA-256 of a file (to check that a JSON record belongs to the result beside it)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
