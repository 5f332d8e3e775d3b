"""The packages of the distribution (the rest of the metadata is in pyproject.toml).

The study's configs live in the repository's top-level ``configs/`` and ship inside the
package as ``trimodal/configs`` (``trimodal.help.configs_dir`` finds either): setuptools'
``packages.find`` cannot add a package that ``package_dir`` maps from elsewhere, so the
list is built here.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["trimodal", "trimodal.*", "data_prep", "data_prep.*"]),
        "trimodal.configs",
        "trimodal.configs.thesis",
    ],
    package_dir={"trimodal.configs": "configs"},
    package_data={"trimodal.configs": ["*.yaml"], "trimodal.configs.thesis": ["*.yaml"]},
)
