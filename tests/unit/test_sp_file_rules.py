"""The file service's pure rules (:mod:`stage_pipeline.file_rules`): path checks, writable areas, signed links and
the tus headers (metadata, checksums, the announced SHA-256). No I/O."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsflow.errors import InputError, OpsflowError
from stage_pipeline.file_rules import (
    TUS_CHECKSUMS,
    ReadOnlyPath,
    UnsafePath,
    check_path,
    encode_metadata,
    link_key,
    link_signature,
    link_valid,
    parse_checksum,
    parse_metadata,
    parse_sha256,
    upload_area,
)

# --- check_path ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("resources/a.png", ("resources", "a.png")),
        ("projects/traffic/stages/detect/1/counts.png", ("projects", "traffic", "stages", "detect", "1", "counts.png")),
        ("resources/a b/c-d_e.f.mp4", ("resources", "a b", "c-d_e.f.mp4")),
        ("resources/vidéo/日本.mp4", ("resources", "vidéo", "日本.mp4")),
        ("resources/a..b", ("resources", "a..b")),  # dots inside a name are no traversal
        ("resources/x" + "a" * 254, ("resources", "x" + "a" * 254)),  # 255 bytes: the limit itself
        ("README", ("README",)),
    ],
)
def test_check_path_accepts_normal_paths(path: str, parts: tuple[str, ...]) -> None:
    assert check_path(path) == parts


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "'/etc/passwd' is absolute"),
        ("/", "'/' is absolute"),
        ("", "empty: name a file or directory"),
        (".", "empty: name a file or directory"),
        ("..", "segment 1 is '..': a path may not leave the store"),
        ("projects/../../etc/passwd", "segment 2 is '..'"),
        ("resources/./a.png", "segment 2 is '.'"),
        ("resources//a.png", "segment 2 is empty"),
        ("resources/a.png/", "segment 3 is empty"),
        (".uploads/hashes.json", "segment 1 ('.uploads') starts with '.'"),
        ("resources/.lock", "segment 2 ('.lock') starts with '.'"),
        ("resources/x/.new-abc/f", "segment 3 ('.new-abc') starts with '.'"),
        ("resources/a\x00b", "segment 2 has a control character (U+0000)"),
        ("resources/a\nb", "segment 2 has a control character (U+000A)"),
        ("resources/x/a\tb", "segment 3 has a control character (U+0009)"),
        ("resources/a\x7fb", "segment 2 has a control character (U+007F)"),
        ("resources/a\x85b", "segment 2 has a control character (U+0085)"),
        ("resources/a\u2028b", "segment 2 has a control character (U+2028)"),
        ("resources/a\u202eb", "segment 2 has a control character (U+202E)"),
        ("resources/" + "a" * 256, "segment 2 is longer than 255 bytes"),
        ("resources/" + "é" * 128, "segment 2 is longer than 255 bytes"),  # 128 characters, 256 bytes in UTF-8
    ],
)
def test_check_path_refuses_and_names_the_segment(path: str, why: str) -> None:
    with pytest.raises(UnsafePath) as caught:
        check_path(path)
    assert str(caught.value).startswith("path: ")
    assert why in str(caught.value)
    assert isinstance(caught.value, InputError)  # the service answers 400 for every InputError


def test_control_characters_win_over_other_problems_and_the_first_bad_segment_is_named() -> None:
    with pytest.raises(UnsafePath, match=r"segment 1 has a control character \(U\+0000\)"):
        check_path(".\x00/..")
    with pytest.raises(UnsafePath, match=re.escape("segment 2 is '..'")):
        check_path("a/../.hidden")


def test_check_path_with_allow_root() -> None:
    assert check_path("", allow_root=True) == ()
    assert check_path(".", allow_root=True) == ()
    assert check_path("resources/", allow_root=True) == ("resources",)  # a directory's trailing '/'
    with pytest.raises(UnsafePath, match="is absolute"):
        check_path("/", allow_root=True)
    with pytest.raises(UnsafePath, match=re.escape("segment 2 is '..'")):
        check_path("resources/../", allow_root=True)


def test_a_segment_of_255_bytes_in_utf8_passes() -> None:
    name = "é" * 127 + "a"  # 255 bytes
    assert check_path(f"resources/{name}") == ("resources", name)


# --- upload_area -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "area"),
    [
        ("resources/a.png", "resources"),
        ("resources/videos/2026/a.mp4", "resources"),
        ("projects/traffic/input/video.mp4", "projects/traffic/input"),
        ("projects/traffic/input/sub/dir/ref.json", "projects/traffic/input"),
    ],
)
def test_upload_area_of_writable_paths(path: str, area: str) -> None:
    assert upload_area(check_path(path)) == area


@pytest.mark.parametrize(
    "path",
    [
        "resources",
        "projects",
        "projects/traffic",
        "projects/traffic/input",  # the area itself is no file
        "projects/traffic/project.json",
        "projects/traffic/stages/detect/1/counts.png",
        "projects/traffic/stages/detect/2/new.png",
        "projects/traffic/logs/detect-1.log",
        "projects/traffic/output/input/x",
        "other/a.png",
        "input/traffic/projects/a",
    ],
)
def test_everything_else_is_read_only(path: str) -> None:
    with pytest.raises(ReadOnlyPath) as caught:
        upload_area(check_path(path))
    assert str(caught.value) == f"{path} is read-only: uploads go to resources/... or projects/<name>/input/..."
    assert isinstance(caught.value, PermissionError) and isinstance(caught.value, OpsflowError)


# --- links -----------------------------------------------------------------------------------------------------

KEY = link_key("s3cret")
PATH = "projects/traffic/stages/detect/1/counts.png"


def test_a_link_is_valid_until_it_expires_and_not_after() -> None:
    sig = link_signature(KEY, PATH, 1000)
    assert len(sig) == 64 and int(sig, 16) >= 0
    assert link_valid(KEY, PATH, 1000, sig, now=0)
    assert link_valid(KEY, PATH, 1000, sig, now=999.9)
    assert link_valid(KEY, PATH, 1000, sig, now=1000)  # the expiry second itself still counts
    assert not link_valid(KEY, PATH, 1000, sig, now=1000.001)
    assert not link_valid(KEY, PATH, 1000, sig, now=5000)


def test_a_link_grants_only_its_own_path_expiry_and_key() -> None:
    sig = link_signature(KEY, PATH, 1000)
    assert not link_valid(KEY, "projects/traffic/project.json", 1000, sig, now=0)
    assert not link_valid(KEY, PATH + "x", 1000, sig, now=0)
    assert not link_valid(KEY, PATH, 2000, sig, now=0)  # a later expiry needs its own signature
    assert not link_valid(link_key("other"), PATH, 1000, sig, now=0)
    assert link_signature(KEY, PATH, 1000) != link_signature(KEY, PATH, 1001)


def test_a_tampered_signature_is_refused() -> None:
    sig = link_signature(KEY, PATH, 1000)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in (flipped, sig[:-1], sig + "0", "", "0" + sig, link_signature(KEY, PATH, 999)):
        assert not link_valid(KEY, PATH, 1000, bad, now=0), bad


def test_link_key_is_derived_from_the_token() -> None:
    assert link_key("s3cret") == KEY and len(KEY) == 32
    assert link_key("s3cret") != link_key("s3cret2")
    assert hashlib.sha256(b"s3cret").digest() != KEY  # not the bare hash of the password


# --- Upload-Metadata -------------------------------------------------------------------------------------------

# tus metadata keys: no spaces, no commas (and nothing that str.strip() would take for whitespace).
KEYS = st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters=","), min_size=1, max_size=20)


@given(st.dictionaries(KEYS, st.text(), max_size=8))
def test_metadata_round_trip(values: dict[str, str]) -> None:
    header = encode_metadata(values)
    assert parse_metadata(header) == values


def test_metadata_header_shape() -> None:
    header = encode_metadata({"path": "resources/v.mp4", "empty": ""})
    assert header == f"path {base64.b64encode(b'resources/v.mp4').decode()},empty "
    assert parse_metadata("path cmVzb3VyY2VzL2E=,flag") == {"path": "resources/a", "flag": ""}
    assert parse_metadata(" a YQ== , , b Yg== ,") == {"a": "a", "b": "b"}
    assert parse_metadata(None) == {} and parse_metadata("") == {}


@pytest.mark.parametrize(
    "header",
    [
        "path not*base64",
        "path YQ",  # padding missing
        "ok YQ==,path @@@@",
        "path " + base64.b64encode(b"\xff\xfe").decode(),  # base64, but not of UTF-8
    ],
)
def test_bad_metadata_values_are_input_errors(header: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_metadata(header)
    assert caught.value.source == "Upload-Metadata"
    assert caught.value.field == "path"
    assert "not base64 of UTF-8 text" in str(caught.value)


# --- Upload-Checksum and the announced SHA-256 -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", TUS_CHECKSUMS)
def test_parse_checksum(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"chunk").digest()
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    assert parse_checksum(header) == (algorithm, digest)
    assert parse_checksum(f"  {header}  ") == (algorithm, digest)


@pytest.mark.parametrize("header", ["crc32 AAAA", "SHA1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", "", "sha512 AAAA"])
def test_unknown_checksum_algorithms_are_refused(header: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_checksum(header)
    assert (caught.value.source, caught.value.field) == ("Upload-Checksum", "algorithm")
    assert "unsupported" in str(caught.value)


@pytest.mark.parametrize("value", ["not-base64!", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0", "qZk+ NkcG"])
def test_a_checksum_that_is_not_base64_is_refused(value: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_checksum(f"sha1 {value}")
    assert (caught.value.source, caught.value.field) == ("Upload-Checksum", "digest")
    assert "not base64" in str(caught.value)


def test_parse_sha256() -> None:
    hexdigest = hashlib.sha256(b"file").hexdigest()
    assert parse_sha256(hexdigest) == hexdigest
    assert parse_sha256(f" {hexdigest.upper()}\n") == hexdigest
    for bad in ("", hexdigest[:-1], hexdigest + "0", "g" + hexdigest[1:], hexdigest[:-1] + "-"):
        with pytest.raises(InputError, match="64 hexadecimal digits expected") as caught:
            parse_sha256(bad)
        assert caught.value.field == "sha256"


@pytest.mark.parametrize("value", ["", "AAAA"])
def test_a_digest_of_the_wrong_length_is_refused(value: str) -> None:
    with pytest.raises(InputError, match="not a sha256 digest"):
        parse_checksum(f"sha256 {value}")
