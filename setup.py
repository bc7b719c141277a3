"""Packaging that pyproject.toml cannot say: the dashboard's static files live in `web/` at the top of the
repository (DESIGN.md's layout) and install as the package data `mom/web/`, so a wheel serves /ui with no
checkout around it. Everything else about the project is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mom", "mom.*", "bench", "bench.*"]), "mom.web"],
    package_dir={"mom.web": "web"},
    package_data={"mom.web": ["*.html", "*.js", "*.css", "*.svg", "LICENSE*"]},
)
