"""Large request bodies through ExternalProcessor.Process: parsed and scanned for personal
data on the worker thread, so the event loop keeps serving; policies still run on the
loop (a regorus engine works only on the thread that made it)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext

from extproc import processor
from extproc.auth import KeyIndexHolder
from extproc.pii_request import PiiScan, PiiSettings
from extproc.processor import LARGE_BODY_BYTES, ExternalProcessor, large_body_executor
from extproc.routes import RouteTable, RouteTableHolder
from tests.unit.test_processor import body, headers, immediate_json, key_index, runtime
from weir.config.v1 import runtime_pb2

EMAIL = "jan.kowalski@example.com"
PATH = "/demo/chat/v1/chat/completions"


def table(*policies: runtime_pb2.Policy, max_scan_bytes: int = 0) -> RouteTable:
    config = runtime()
    config.pii_policies.append(
        runtime_pb2.PiiPolicy(
            name="anon",
            action=runtime_pb2.PiiPolicy.ACTION_ANONYMIZE,
            art9_action=runtime_pb2.PiiPolicy.ART9_ACTION_FLAG,
            restore_responses=True,
            max_scan_bytes=max_scan_bytes,
        )
    )
    config.endpoints[0].pii_policy = "anon"
    config.policies.extend(policies)
    return RouteTable.compile(config)


def policy(rego: str) -> runtime_pb2.Policy:
    return runtime_pb2.Policy(
        name="p",
        stage=runtime_pb2.Policy.STAGE_REQUEST,
        module=f"package p\n\n{rego}",
        package="data.p",
        endpoints=["demo-chat"],
    )


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The thread each PII scan ran on."""
    threads: list[str] = []
    real = processor.scan

    def recorded(messages: list[Any], settings: PiiSettings) -> PiiScan:
        threads.append(threading.current_thread().name)
        return real(messages, settings)

    monkeypatch.setattr(processor, "scan", recorded)
    yield threads


async def process(routes: RouteTable, request_body: dict[str, Any]) -> ext.ProcessingResponse:
    """Headers, then the body, through Process; the answer to the body."""
    holder = RouteTableHolder()
    holder.table = routes
    keys = KeyIndexHolder()
    keys.index = key_index()
    servicer = ExternalProcessor(holder, keys, large_bodies=large_body_executor())

    async def messages() -> AsyncIterator[ext.ProcessingRequest]:
        yield headers("POST", PATH)
        yield body(request_body)

    answers = [answer async for answer in servicer.Process(messages(), None)]
    return answers[-1]


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def sent_upstream(answer: ext.ProcessingResponse) -> dict[str, Any]:
    assert answer.WhichOneof("response") == "request_body", answer
    parsed: dict[str, Any] = orjson.loads(answer.request_body.response.body_mutation.body)
    return parsed


LARGE = f"Write to {EMAIL}. " + "lorem ipsum " * (LARGE_BODY_BYTES // 12)


async def test_a_large_body_is_scanned_on_the_worker_thread(scans: list[str]) -> None:
    sent = sent_upstream(await process(table(), chat(LARGE)))
    assert sent["messages"][0]["content"].startswith("Write to <EMAIL_1>. ")
    assert EMAIL not in orjson.dumps(sent).decode()
    assert len(scans) == 1 and scans[0].startswith("weir-large-body")


async def test_a_small_body_is_scanned_on_the_loop(scans: list[str]) -> None:
    sent = sent_upstream(await process(table(), chat(f"Write to {EMAIL}.")))
    assert sent["messages"][0]["content"] == "Write to <EMAIL_1>."
    assert scans == [threading.current_thread().name]


async def test_policies_on_a_large_body_run_on_the_loop_and_decide(scans: list[str]) -> None:
    deny = policy('deny contains "no bob" if input.request.user == "bob"')
    status, envelope = immediate_json(await process(table(deny), chat(LARGE, user="bob")))
    assert status == 403
    assert envelope["error"]["code"] == "policy_denied"
    assert "no bob" in envelope["error"]["message"]
    sent = sent_upstream(await process(table(deny), chat(LARGE, user="alice")))
    assert sent["messages"][0]["content"].startswith("Write to <EMAIL_1>. ")


async def test_messages_a_policy_replaces_are_scanned_again(scans: list[str]) -> None:
    patch = policy('patch := {"messages": [{"role": "user", "content": "Call anna@example.com"}]}')
    sent = sent_upstream(await process(table(patch), chat(LARGE)))
    assert sent["messages"] == [{"role": "user", "content": "Call <EMAIL_1>"}]
    assert len(scans) == 2 and scans[1] == threading.current_thread().name


async def test_a_large_body_over_the_scan_limit_is_refused(scans: list[str]) -> None:
    routes = table(max_scan_bytes=LARGE_BODY_BYTES)
    status, envelope = immediate_json(await process(routes, chat(LARGE)))
    assert status == 413
    assert envelope["error"]["code"] == "pii_scan_too_large"
    assert EMAIL not in orjson.dumps(envelope).decode()
