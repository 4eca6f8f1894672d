"""The public API names resolve, and `import usm_geo` does not pull in the heavy stack."""

import subprocess
import sys

import usm_geo


def test_public_names_resolve():
    for name in usm_geo.__all__:
        assert getattr(usm_geo, name) is not None, name


def test_import_is_light():
    code = "import sys, usm_geo; print('geopandas' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
