from pathlib import Path

import pytest

from router.redis_server import EmbeddedRedis, running_embedded_url


def test_a_running_embedded_redis_can_be_found_by_its_directory(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    assert running_embedded_url(directory) is None
    with EmbeddedRedis(directory, persist=False) as server:
        assert running_embedded_url(directory) == server.url
    assert running_embedded_url(directory) is None  # stopped: the URL file is gone and nothing answers


def test_a_stale_url_file_is_not_trusted(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persist=False)
    server.start()
    url_file = server.url_file
    saved = url_file.read_text()
    server.stop()
    url_file.write_text(saved)  # as if the server had died without cleaning up
    assert running_embedded_url(tmp_path) is None


def test_a_relative_directory_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default data directory is relative (./.moa-router), as in `make demo` on a fresh clone.
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(Path(".moa-router/redis"), persist=True) as server:
        assert running_embedded_url(Path(".moa-router/redis")) == server.url
    assert (tmp_path / ".moa-router/redis/redis.log").exists()
