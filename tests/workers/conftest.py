"""The worker's tests share the service's database and clip fixtures."""

from tests.service.conftest import clip, make_clip, sqlite_db_url

__all__ = ["clip", "make_clip", "sqlite_db_url"]
