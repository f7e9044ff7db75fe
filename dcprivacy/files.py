"""Files that are safe to read and whole when written.

- **Safe**: :func:`load` reads a ``.pt`` file with ``torch.load(..., weights_only=True)``: only
  tensors and plain values (dicts, lists, tuples, numbers, strings) come back; a file that holds
  anything else — e.g. a crafted pickle that would run code — is refused with :class:`UnsafeFileError`.
  Everything the package writes is such a plain dict (see ``to_dict``/``from_dict`` of its results).
- **Whole**: :func:`save`, :func:`write_text` and :func:`write_json` write to a temporary file in
  the target's folder and rename it into place (``os.replace``, atomic on POSIX): a kill leaves the
  previous file or the new one, never half of one.
- **Paired**: :func:`save_with_record` writes a result (``.pt``) and its JSON record so that a
  stale record never sits beside a new result; :func:`load` refuses a result whose record is beside
  it but describes another file (its SHA-256 differs).
- **Claimed**: :func:`claim_output` checks an output (``--out``) before any work: it refuses a target
  that this command did not write for the same arguments (unless forced), a directory in the place of
  either file of a pair, and a second run writing the same target at the same time (a lock held
  until the result is written).

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


def load(path, *, what: str = "file", record=None) -> dict:
    """Read a ``.pt`` file written by this package: tensors and plain values only (``weights_only=True``).

    ``what`` names the file's role in error messages (e.g. ``"synthetic set"``). When the file's JSON
    record is beside it (``record``, default: the same name with ``.json``) and carries a SHA-256, the
    file must be the one it describes (:func:`check_record`)."""
    path = Path(path)
    if not path.exists():
        raise FileError(f"{what} {path}: no such file")
    if path.is_dir():
        raise FileError(f"{what} {path} is a directory, not a file")
    check_record(path, record, what=what)
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


def check_record(path, record=None, *, what: str = "file") -> None:
    """Refuse ``path`` when its JSON record (``record``, default: ``path`` with ``.json``) is beside it,
    carries a SHA-256 (as :func:`save_with_record` writes it) and that digest is not ``path``'s.

    Such a pair cannot come from :func:`save_with_record` (a kill leaves a result without a record, never
    a record of another result): the result or the record was replaced or altered afterwards, so the
    record's provenance would be attached to a file it does not describe. A JSON file there that is not
    such a record (unreadable, or without ``sha256``) is left alone."""
    path = Path(path)
    record = path.with_suffix(".json") if record is None else Path(record)
    if record == path or not record.is_file():
        return
    try:
        d = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(d, dict) or not isinstance(d.get("sha256"), str):
        return
    if d["sha256"] != sha256(path):
        raise FileError(f"{what} {path} is not the file its record {record} describes (SHA-256 differs): one of "
                        f"the two was replaced or altered; write the result again, or remove {record} if {path} "
                        f"is the file you mean")


def _trailing_separator(raw) -> bool:
    """Whether the path as typed names a folder (``x.pt/``, ``x.pt/.``), which ``Path`` would hide."""
    return os.path.basename(os.fspath(raw)) in ("", ".", "..")


def check_out_path(path, *, suffix: str | None = None, what: str = "--out") -> Path:
    """Validate an output file before any work: its suffix, not a directory (nor typed as one, with a
    trailing separator), a folder we can write (created if missing). Raises :class:`FileError` with a
    one-line message."""
    raw = path
    path = Path(path)
    if _trailing_separator(raw):
        raise FileError(f"{what} {raw}: ends in a path separator, so it names a folder: give a file name"
                        + (f", e.g. {path / ('result' + suffix)}" if suffix else ""))
    if suffix is not None and path.suffix != suffix:
        raise FileError(f"{what} {path}: must end in {suffix}" +
                        (f" (a {path.suffix} record is written beside it)" if path.suffix == ".json" else ""))
    if path.is_dir():
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


# --- outputs: not replacing what this command did not write, one writer at a time --------------------------

def _without(d, ignore):
    """``d`` without the keys ``ignore``, at every depth (e.g. ``force``, ``out``: how a run was asked to
    write, not what it computes)."""
    if isinstance(d, dict):
        return {k: _without(v, ignore) for k, v in d.items() if k not in ignore}
    if isinstance(d, list):
        return [_without(v, ignore) for v in d]
    return d


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.') or 'value'}: {a!r} there, {b!r} now"


def _refusal(path, record, inputs, profile, ignore) -> str | None:
    """Why ``path`` (and its ``record``) may not be replaced by this run; None if it may."""
    if not record.exists():
        return f"{path} exists without its record {record.name}, so nothing says this command wrote it"
    try:
        d = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        return f"{record} is not a JSON record of dcprivacy ({_short(e)})"
    prov = d.get("provenance") if isinstance(d, dict) else None
    if not isinstance(prov, dict) or not isinstance(prov.get("config"), dict):
        return f"{record} is not a record written by dcprivacy (no provenance)"
    then, now = _without(prov["config"], ignore), _without(inputs, ignore)
    if then != now:
        return f"{record} records another command or other arguments ({_first_difference(then, now)})"
    if profile is not None and prov.get("profile") not in (None, profile):
        return f"{record} was written under the profile {prov.get('profile')!r}, this run uses {profile!r}"
    if record != path and path.exists() and d.get("sha256") != sha256(path):
        return f"{path} is not the file {record.name} records (SHA-256 differs)"
    return None


class OutputClaim:
    """An output claimed by :func:`claim_output`: a lock held until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path, lock: Path | None = None, fd: int | None = None):
        self.path, self.lock, self.fd = path, lock, fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.lock.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the file it locked
        finally:
            os.close(self.fd)  # (closing releases the lock)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _lock(path: Path, what: str) -> OutputClaim:
    """Hold an exclusive lock on ``.NAME.lock`` beside ``path``: one writer of ``path`` at a time. The
    operating system drops it when the process ends, even by SIGKILL (a killed run can be resumed at
    once); :meth:`OutputClaim.release` removes the file."""
    try:
        import fcntl
    except ImportError:  # (no flock on this platform: no lock; the checks still hold)
        return OutputClaim(path)
    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise FileError(f"{what} {path}: another run is writing it now (process {holder or '?'}, lock "
                            f"{lock}); wait until it ends, or choose another --out") from None
        except OSError:  # a file system without locks (some network ones): no lock; the checks still hold
            os.close(fd)
            lock.unlink(missing_ok=True)
            return OutputClaim(path)
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino  # not a lock file its holder just removed
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return OutputClaim(path, lock, fd)
        os.close(fd)


def claim_output(path, record=None, *, inputs: dict, force: bool = False, profile: str | None = None,
                 what: str = "--out", ignore=("force", "out"), lock: bool = True) -> OutputClaim:
    """Before any work, claim ``path`` (and its JSON ``record``, for a pair; ``None`` when ``path`` is
    itself the JSON record) for this run, or raise :class:`FileError` with one line saying why not:

    - either path is a directory, or exists and is not a regular file (even with ``force``);
    - another run holds the claim (concurrent writers of one output: the second is refused at once);
    - unless ``force``: something exists there that is not this command's record for the same
      ``inputs`` (the ``config`` its provenance records, compared without the keys ``ignore``) under the
      same ``profile``, or a result beside it that the record does not describe (SHA-256).

    Release the returned claim (it is a context manager) after the result is written. ``lock=False``:
    only the checks (e.g. before the folder that would hold the lock exists)."""
    path = Path(path)
    record = path if record is None else Path(record)
    for p in dict.fromkeys((path, record)):
        if p.is_dir():
            raise FileError(f"{what} {path}: {p} is a directory, where the {'record' if p == record else 'result'} "
                            f"would be written; move it or choose another --out")
        if (p.exists() or p.is_symlink()) and not p.is_file():
            raise FileError(f"{what} {path}: {p} exists and is not a regular file; choose another --out")
    claim = _lock(path, what) if lock else OutputClaim(path)
    try:
        if not force and (path.exists() or record.exists()):
            why = _refusal(path, record, inputs, profile, ignore)
            if why:
                raise FileError(f"{what} {path}: {why}; pass --force to replace it, or choose another --out")
    except BaseException:
        claim.release()
        raise
    return claim


def sha256(path) -> str:
    """The SHA-256 of a file (to check that a JSON record belongs to the result beside it)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
