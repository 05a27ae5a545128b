"""Write the example street camera video: `python examples/make_street_video.py [OUT.mp4]`.

A 20 s, 15 FPS, 1280x720 synthetic street (people on the pavement, a passing car) with seed 3, the scene
`examples/cameras.yaml` draws its zone and counting line for. Needs the workstation install (`edgecam[train]`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgecam.train.synth import make_security_video

DEFAULT = Path(__file__).resolve().parent.parent / "runs" / "examples" / "street.mp4"


def main(out: Path = DEFAULT, seconds: float = 20) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    make_security_video(out, seconds=seconds, fps=15, size=(1280, 720), seed=3)
    return out


if __name__ == "__main__":
    print(f"wrote {main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)}")
