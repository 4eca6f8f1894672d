"""Where numba's kernel cache goes: numba's own places when writable, else a temporary folder."""

import os
import subprocess
import sys
import tempfile

import usm_geo


def test_writable_package_keeps_numbas_default(tmp_path):
    (tmp_path / "units").mkdir()
    assert usm_geo._numba_cache_dir(str(tmp_path), {"XDG_CACHE_HOME": str(tmp_path / "c")}) is None


def test_user_set_folder_is_kept(tmp_path):
    assert usm_geo._numba_cache_dir("/nonexistent", {"NUMBA_CACHE_DIR": str(tmp_path)}) is None


def test_nothing_writable_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    # as root every folder is writable, so "read-only" is os.access saying no for these two places
    package, home = tmp_path / "site-packages" / "usm_geo", tmp_path / "home"
    (package / "units").mkdir(parents=True)
    home.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(tmp_path)) else real(p, mode))
    got = usm_geo._numba_cache_dir(str(package), {"XDG_CACHE_HOME": str(home)})
    assert got == os.path.join(tempfile.gettempdir(), f"usm_geo-numba-cache-{os.getuid()}")


def test_the_fallback_folder_is_what_numba_uses(tmp_path):
    # set before numba is imported (as usm_geo/__init__ does), the folder is numba's cache folder
    code = ("import usm_geo.units.h3index as h, numba, os; "
            "print(numba.config.CACHE_DIR == os.environ['NUMBA_CACHE_DIR'])")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
