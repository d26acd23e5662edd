"""Where the files that ship beside the package are, in a checkout and in an installed wheel.

The Airflow DAG files and the Airflow plugin (the DiPro page) are not modules of the package
(Airflow imports them from its DAG and plugins folders by path). In a checkout they are the
repository's ``dags/`` and ``plugins/``; a wheel installs them under
``<prefix>/share/dipro-fhir/dags`` and ``.../plugins`` (``[tool.setuptools.data-files]`` in
``pyproject.toml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dipro_fhir.core.errors import ConfigError

#: The folder of the ``dipro_fhir`` package.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def checkout_root() -> Path | None:
    """The repository root when the package runs from a source checkout (or an editable
    install of one); None for an installed wheel."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "dags").is_dir() else None


def dags_folder() -> Path:
    """The folder of the Airflow DAG files: the checkout's ``dags/``, else the installed copy.

    Raises:
        ConfigError: Neither exists (a wheel installed without its data files).
    """
    root = checkout_root()
    folder = root / "dags" if root else Path(sys.prefix) / "share" / "dipro-fhir" / "dags"
    if not (folder / "dipro_nightly.py").is_file():
        raise ConfigError(f"the Airflow DAG files are missing: no dipro_nightly.py in {folder}")
    return folder


def plugins_folder() -> Path:
    """The folder of the Airflow plugin (``dipro_ui.py``, the DiPro page): the checkout's
    ``plugins/``, else the installed copy (``AIRFLOW__CORE__PLUGINS_FOLDER`` names it).

    Raises:
        ConfigError: Neither exists (a wheel installed without its data files).
    """
    root = checkout_root()
    folder = root / "plugins" if root else Path(sys.prefix) / "share" / "dipro-fhir" / "plugins"
    if not (folder / "dipro_ui.py").is_file():
        raise ConfigError(f"the Airflow plugin is missing: no dipro_ui.py in {folder}")
    return folder
