"""`moa-router serve`: its arguments are checked before anything starts."""

from __future__ import annotations

import pytest

from router.cli import main


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_a_port_out_of_range_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:  # 70000 went on to uvicorn, which said it served there
        main(["serve", "--demo", "--port", port])
    assert stopped.value.code == 2
    assert "argument --port" in capsys.readouterr().err
