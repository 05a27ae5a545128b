"""Camera credentials are masked wherever a source is shown: the URL rules, and the messages that name a source."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.runtime.config import parse_runtime_config
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.live import LiveReader
from edgecam.runtime.reconnect import Reconnector, ReconnectPolicy
from edgecam.runtime.redact import mask_text, mask_url
from edgecam.runtime.sources import open_source


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("rtsp://admin:s3cretPW@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://admin:s3cretPW@127.0.0.1:8080/cam.mjpg", "http://admin:***@127.0.0.1:8080/cam.mjpg"),
        ("rtsp://:s3cretPW@cam/live", "rtsp://:***@cam/live"),
        ("rtsp://admin:p@ss@cam/live", "rtsp://admin:***@cam/live"),  # '@' in the password: FFmpeg's last '@'
        ("rtsp://admin:pa/ss@cam/live", "rtsp://admin:***@cam/live"),  # an unencoded '/' in the password
        ("rtsp://admin:pa?ss@cam/live", "rtsp://admin:***@cam/live"),
        ("https://cam/live?token=abc123&channel=2", "https://cam/live?token=***&channel=2"),
        (
            "https://cam/live?channel=2&password=abc;stream_key=k#top",
            "https://cam/live?channel=2&password=***;stream_key=***#top",
        ),
        (
            "http://cam/x?pass=a&pwd=b&api_key=c&auth=d&X-Amz-Signature=e",
            "http://cam/x?pass=***&pwd=***&api_key=***&auth=***&X-Amz-Signature=***",
        ),
        ("rtsp://u:p@cam/live?key=z", "rtsp://u:***@cam/live?key=***"),
        ("rtsp://admin@cam/live", "rtsp://admin@cam/live"),  # a user name alone is no secret
        ("http://cam:8080/x@y", "http://cam:8080/x@y"),  # an '@' in the path of a URL without credentials
        ("http://[::1]:554/live", "http://[::1]:554/live"),
        ("/data/videos/door.mp4", "/data/videos/door.mp4"),
        ("0", "0"),
    ],
)
def test_mask_url(spec, shown):
    assert mask_url(spec) == shown
    assert mask_url(shown) == shown  # masking a masked URL changes nothing


def test_mask_text_masks_every_url_in_a_message():
    text = "cannot open 'rtsp://admin:s3cretPW@cam/1' nor http://u:hunter2@cam:81/x?token=t0k"
    assert mask_text(text) == "cannot open 'rtsp://admin:***@cam/1' nor http://u:***@cam:81/x?token=***"


PASSWORD = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")).filter(lambda c: c not in "/?#"), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["rtsp", "rtsps", "http", "https"]),
    user=st.text(st.characters(whitelist_categories=("Ll", "Nd")), max_size=8),
    password=PASSWORD,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    token=st.text(st.characters(whitelist_categories=("Lu", "Nd")), min_size=1, max_size=20),
)
def test_no_password_or_token_survives_masking(scheme, user, password, port, token):
    secret = "SECRET" + password  # no host, path or user below contains "SECRET"
    host = "cam.local" + (f":{port}" if port else "")
    url = f"{scheme}://{user}:{secret}@{host}/live/ch1?channel=1&token=TOK{token}"
    shown = mask_url(url)
    assert "SECRET" not in shown and f"TOK{token}" not in shown
    assert shown == f"{scheme}://{user}:***@{host}/live/ch1?channel=1&token=***"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_masking_arbitrary_text_never_fails(text):
    assert isinstance(mask_url(text), str) and isinstance(mask_text(text), str)
    assert mask_url(mask_url(text)) == mask_url(text)


# --- where a source is named ----------------------------------------------------------------------------------

URL = "rtsp://admin:s3cretPW@127.0.0.1:9/stream1"
SHOWN = "rtsp://admin:***@127.0.0.1:9/stream1"


class Dead:
    def isOpened(self) -> bool:  # noqa: N802
        return False

    def release(self) -> None:
        pass


def test_a_stream_that_cannot_open_is_named_masked():
    seen = []
    with pytest.raises(EdgecamError) as info:
        open_source(URL, capture_factory=lambda target: seen.append(target) or Dead())
    assert seen == [URL]  # the opener alone gets the real URL
    assert "s3cretPW" not in str(info.value) and SHOWN in str(info.value)


def test_a_misspelt_scheme_is_not_found_masked():
    with pytest.raises(EdgecamError) as info:
        open_source("rtps://admin:s3cretPW@cam/1")
    assert "s3cretPW" not in str(info.value) and "rtps://admin:***@cam/1" in str(info.value)


def test_reconnect_events_warnings_and_thread_name_are_masked(capsys):
    events = []

    def opener():
        raise OSError(f"refused by {URL}")

    policy = ReconnectPolicy(max_attempts=1)
    reconnector = Reconnector(URL, opener, policy, events.append)
    reader = LiveReader(None, URL, reconnector=reconnector)
    assert "s3cretPW" not in reader._thread.name
    reader.start()
    reader._thread.join(5)
    err = capsys.readouterr().err
    assert [e.kind for e in events] == ["source_lost"]
    assert events[0].source_id == SHOWN and "s3cretPW" not in str(events[0].to_dict())
    assert "s3cretPW" not in err and f"{SHOWN}: stream lost (cannot open: refused by {SHOWN})" in err


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rtps://admin:s3cretPW@cam/1", "unsupported URL rtps://admin:***@cam/1"),
        ({"url": "rtsp://admin:s3cretPW@a-very-long-host-name.example.com/stream"}, "rtsp://admin:***@"),
    ],
)
def test_config_errors_echo_a_source_masked(tiny_bundle, tmp_path, source, expected):
    camera = {"name": "door", "source": source, "bundle": str(tiny_bundle)}
    with pytest.raises(EdgecamError) as info:
        parse_runtime_config({"cameras": [camera]}, "cameras.yaml", tmp_path)
    assert "s3cretPW" not in str(info.value) and expected in str(info.value)
