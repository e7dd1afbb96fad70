"""Package list for setuptools: the three code packages, plus protocols/ as package data.

The built-in protocol files live in the top-level protocols/ folder (DESIGN.md) and are
installed as ``chipctl.builtin_protocols``. An editable install does not follow that
mapping; chipctl.protocol.catalog then finds the folder beside the source tree.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(
            include=["chipctl", "chipctl.*", "drivers", "drivers.*", "simulator", "simulator.*"]
        ),
        "chipctl.builtin_protocols",
    ],
    package_dir={"chipctl.builtin_protocols": "protocols"},
    package_data={
        "chipctl": ["rigs/*.toml", "py.typed"],
        "chipctl.builtin_protocols": ["*.toml", "*.md"],
    },
)
