"""The supervisor's process handling, on real child processes."""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path

import pytest

from weir.ports import port_in_use
from weir.supervisor import Part, UpSettings, ready_message


async def test_a_very_long_output_line_does_not_stop_the_pump(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 300000 + '\\nafter\\n'); sys.stdout.flush()"
    part = Part("talker", [sys.executable, "-c", script], log_file=tmp_path / "talker.log")
    await part.start(echo=False)
    assert part.process is not None
    assert await part.process.wait() == 0
    assert part.pump is not None
    await part.pump
    assert list(part.recent)[-1] == "after"
    assert len(list(part.recent)[-2]) == 300000
    assert (tmp_path / "talker.log").read_text().endswith("after\n")


async def test_stop_ends_a_child_that_ignores_sigterm() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    part = Part("stubborn", [sys.executable, "-c", script])
    await part.start(echo=False)
    assert part.process is not None
    for _ in range(200):  # until the child has installed its handler and said so
        if part.recent:
            break
        await asyncio.sleep(0.05)
    await part.stop(timeout=0.5)
    assert part.process.returncode is not None and part.process.returncode < 0


def test_ready_message_shows_how_to_call_each_endpoint() -> None:
    text = ready_message(
        UpSettings(config_dir=Path("x"), port=9000), [("demo", "chat", ["gpt-4o-mini"])]
    )
    assert "http://127.0.0.1:9000/demo/chat/v1" in text
    assert 'OpenAI(base_url="http://127.0.0.1:9000/demo/chat/v1"' in text
    assert '"model": "gpt-4o-mini"' in text


def test_an_address_this_machine_lacks_is_not_reported_as_a_taken_port() -> None:
    with pytest.raises(OSError) as raised:
        port_in_use("10.255.255.1", 18555)  # not a local address
    assert raised.value.errno == errno.EADDRNOTAVAIL
