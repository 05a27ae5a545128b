"""Packages are found, not listed: each top-level folder is one `edgecam.*` package with its sub-packages.

pyproject.toml holds everything else; setuptools cannot discover this layout (runtime/ -> edgecam.runtime) on its own,
and a hand-written list once left `edgecam.train.detection` out of the wheel.
"""

from setuptools import find_packages, setup

ROOTS = {
    "edgecam": "edgecam",
    "edgecam.runtime": "runtime",
    "edgecam.train": "train",
    "edgecam.export": "export",
    "edgecam.devices": "devices",
    "edgecam.bench": "bench",
}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found += [name, *(f"{name}.{sub}" for sub in find_packages(folder))]
    return found


if __name__ == "__main__":
    setup(packages=packages(), package_dir=ROOTS)
