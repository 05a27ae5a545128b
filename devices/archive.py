"""Reading a package archive without trusting it.

`check_archive` reads the whole tar stream and hashes every member in memory-sized chunks before anything is written
to disk; it refuses path traversal (`..`, absolute names), links, device files, FIFOs and any file that
`package.json` does not list with the same sha256 and size. `extract_archive` then writes the members itself (never
`tarfile.extract`, which follows the archive's own ideas of names, modes and owners), hashing them again as it
writes: the file could change between the two reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

from edgecam.devices.package import FORMAT, INDEX
from edgecam.runtime.errors import EdgecamError

MAX_INDEX_BYTES = 4 << 20
CHUNK = 1 << 20
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")  # a release directory's name
TAMPERED_FIX = "the package was changed or damaged after `edgecam package`: copy it again or rebuild it"


def _kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "directory"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return "special entry"


def safe_name(name: str) -> str:
    """The member's relative POSIX path, or EdgecamError when it is absolute, climbs out (`..`) or is odd."""
    if not name or "\x00" in name or "\\" in name:
        raise ValueError("is empty or holds a NUL or backslash")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ValueError("is an absolute path")
    if ".." in path.parts:
        raise ValueError("climbs out of the package (path traversal)")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise ValueError("names no file")
    return "/".join(parts)


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise EdgecamError(
            "package not found", path=path, fix="give the .tar.gz written by `edgecam package`"
        ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise EdgecamError(f"not a readable package ({exc})", path=path, fix=TAMPERED_FIX) from None


def _hash(stream: IO[bytes], sink: IO[bytes] | None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def _walk(path: Path, dest: Path | None) -> tuple[dict[str, Any] | None, dict[str, tuple[str, int]]]:
    """One pass over the archive: (package.json, {name: (sha256, size)}); with `dest`, files are written there."""
    index, seen = None, {}
    tar = _open(path)
    try:
        for member in tar:
            try:
                name = safe_name(member.name)
            except ValueError as exc:
                raise EdgecamError(f"entry {member.name!r} {exc}", path=path, fix=TAMPERED_FIX) from None
            kind = _kind(member)
            if kind == "directory":
                continue
            if kind != "file":
                problem = f"entry {name!r} is a {kind}: a package holds regular files only"
                raise EdgecamError(problem, path=path, fix=TAMPERED_FIX)
            if name in seen or (name == INDEX and index is not None):
                raise EdgecamError(f"entry {name!r} appears twice", path=path, fix=TAMPERED_FIX)
            stream = tar.extractfile(member)
            if stream is None:
                raise EdgecamError(f"entry {name!r} cannot be read", path=path, fix=TAMPERED_FIX)
            if name == INDEX:
                data = stream.read(MAX_INDEX_BYTES + 1)
                if len(data) > MAX_INDEX_BYTES:
                    raise EdgecamError(f"{INDEX} is too large", path=path, fix=TAMPERED_FIX)
                index = _parse_index(data, path)
                continue
            if index is not None and name not in index["files"]:  # refused before its bytes are read
                raise EdgecamError(f"entry {name!r} is not listed in {INDEX}", path=path, fix=TAMPERED_FIX)
            if dest is None:
                seen[name] = _hash(stream, None)
            else:
                seen[name] = _write(stream, dest / name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise EdgecamError(f"corrupt package ({exc})", path=path, fix=TAMPERED_FIX) from None
    finally:
        tar.close()
    return index, seen


def _write(stream: IO[bytes], target: Path) -> tuple[str, int]:
    """One member to disk; a full disk or a read-only root is said as such, not as a corrupt package."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            return _hash(stream, fh)
    except OSError as exc:
        if exc.filename is None:  # raised by the archive's stream, not by the file being written
            raise
        raise EdgecamError(f"cannot write {target}: {exc.strerror}", fix="free space, or check the root") from None


def _parse_index(data: bytes, path: Path) -> dict[str, Any]:
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EdgecamError(f"{INDEX} is not valid JSON", path=path, fix=TAMPERED_FIX) from None
    files = index.get("files") if isinstance(index, dict) else None
    if not isinstance(files, dict) or index.get("format") != FORMAT:
        raise EdgecamError(f"{INDEX} is not an edgecam package index ({FORMAT})", path=path, fix=TAMPERED_FIX)
    if not isinstance(index.get("version"), str) or not VERSION.match(index["version"]):
        raise EdgecamError(
            f"{INDEX}: version {index.get('version')!r} is not a plain name", path=path, fix=TAMPERED_FIX
        )
    for rel, info in files.items():
        try:
            ok = (
                safe_name(rel) == rel
                and isinstance(info.get("sha256"), str)
                and isinstance(info.get("size_bytes"), int)
            )
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise EdgecamError(f"{INDEX}: file entry {rel!r} is malformed", path=path, fix=TAMPERED_FIX)
    for key in ("config", "wheel"):
        if index.get(key) not in files:
            raise EdgecamError(f"{INDEX}: its {key} is not one of its files", path=path, fix=TAMPERED_FIX)
    return index


def _compare(index: dict[str, Any] | None, seen: dict[str, tuple[str, int]], path: Path) -> dict[str, Any]:
    if index is None:
        raise EdgecamError(f"no {INDEX} in the archive", path=path, fix="give the .tar.gz written by `edgecam package`")
    files = index["files"]
    extra = sorted(set(seen) - set(files))
    if extra:
        raise EdgecamError(f"entry {extra[0]!r} is not listed in {INDEX}", path=path, fix=TAMPERED_FIX)
    missing = sorted(set(files) - set(seen))
    if missing:
        raise EdgecamError(f"{missing[0]} is listed in {INDEX} but not in the archive", path=path, fix=TAMPERED_FIX)
    for rel, info in files.items():
        digest, size = seen[rel]
        if digest != info["sha256"] or size != info["size_bytes"]:
            raise EdgecamError(f"{rel}: sha256 differs from {INDEX}", path=path, fix=TAMPERED_FIX)
    return index


def check_archive(path: str | Path) -> dict[str, Any]:
    """The package's index once every member has passed; EdgecamError naming the first problem. Writes nothing."""
    path = Path(path)
    return _compare(*_walk(path, None), path)


def extract_archive(path: str | Path, dest: Path) -> dict[str, Any]:
    """Write the (already checked) members under the new, empty `dest`, checking every checksum again; the caller
    removes `dest` when this raises."""
    path = Path(path)
    dest.mkdir(parents=True)
    index = _compare(*_walk(path, dest), path)
    (dest / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index
