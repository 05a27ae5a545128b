"""FFmpeg's own log lines (through OpenCV) are silenced in the runtime; edgecam reports what matters itself.

Left on, libav prints a line per failed reconnect attempt (`[tcp @ 0x...] Connection ... refused`) and per damaged
frame (`[mpeg4 @ 0x...] marker does not match f_code`): thousands of lines for one corrupt file, on a device's
journal. The runtime already says what an operator needs once (a lost and a restored stream, corrupt frames in the
stats), so the library's lines are turned off. OpenCV reads `OPENCV_FFMPEG_LOGLEVEL` once, when the process first
opens a capture or writer, so this must run before that (`runtime/sources.py` calls it on import);
`cv2.utils.logging.setLogLevel` does not reach libav in this OpenCV build. A value already in the environment is
kept, and `EDGECAM_DEBUG=1` keeps libav's default, for debugging a camera.
"""

from __future__ import annotations

import os

AV_LOG_QUIET = "-8"  # libavutil/log.h: print no output


def silence_ffmpeg_logs() -> None:
    """Set OpenCV's FFmpeg log level to quiet for this process unless the user chose a level or debugs."""
    if not os.environ.get("EDGECAM_DEBUG"):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", AV_LOG_QUIET)
