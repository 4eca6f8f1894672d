"""The Demo City run shared by the integration tests is the session fixture ``demo`` in
tests/conftest.py (the PostGIS tests compare against the same run)."""
