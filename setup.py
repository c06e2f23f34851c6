"""Package layout only (metadata lives in pyproject.toml).

`resources/` sits at the repo root and ships as the data package
`ioi_desktop_resources`, so an editable install, a wheel and a frozen build all
find it through ``ioi_desktop.core.paths.resources_dir()``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ioi_desktop", "ioi_desktop.*"]) + ["ioi_desktop_resources"],
    package_dir={"ioi_desktop_resources": "resources"},
)
