"""The pipeline tests use the same real-Runtime fixtures as the runtime tests."""

from tests.runtime.conftest import AddPlugin, add, db_path, rt

__all__ = ["AddPlugin", "add", "db_path", "rt"]
