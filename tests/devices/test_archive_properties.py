"""Whatever an archive holds, `check_archive` returns its index or raises EdgecamError, and never passes a member
whose name leaves the release directory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.devices.archive import check_archive
from edgecam.devices.package import FORMAT
from edgecam.runtime.errors import EdgecamError

SEGMENT = st.sampled_from(["..", ".", "", "a", "bundle", "b.onnx", "/", "C:", "x\\y"])
NAMES = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _archive(path: Path, index: bytes, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("package.json", index), *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _index(members: list[tuple[str, bytes]]) -> bytes:
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size_bytes": len(d)} for n, d in members}
    files.setdefault("cameras.yaml", {"sha256": hashlib.sha256(b"").hexdigest(), "size_bytes": 0})
    index = {"format": FORMAT, "version": "1.0+abc", "config": "cameras.yaml", "wheel": "cameras.yaml", "files": files}
    return json.dumps(index).encode()


@settings(max_examples=100, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=3, unique=True))
def test_names_outside_the_release_never_pass(tmp_path_factory, names):
    members = [(n, n.encode()) for n in names] + [("cameras.yaml", b"")]
    members = list(dict(members).items())
    path = _archive(tmp_path_factory.mktemp("a") / "p.tar.gz", _index(members), members)
    try:
        index = check_archive(path)
    except EdgecamError:
        return
    for name in index["files"]:
        parts = PurePosixPath(name).parts
        assert ".." not in parts and not name.startswith("/") and "\\" not in name


@settings(max_examples=100, deadline=None)
@given(index=JSON)
def test_any_package_json_is_an_index_or_an_edgecam_error(tmp_path_factory, index):
    path = _archive(tmp_path_factory.mktemp("j") / "p.tar.gz", json.dumps(index).encode(), [("cameras.yaml", b"")])
    try:
        result = check_archive(path)
    except EdgecamError as exc:
        assert "package.json" in str(exc)  # the one file that can be wrong here, named
        return
    assert result == index  # only a well-formed index passes
