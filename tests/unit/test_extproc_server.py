"""The ext_proc server's gRPC health: alive at once (`liveness`), ready (`weir.extproc`, "")
only once the control plane's config is applied, nothing after a stop."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.server import HEALTH_SERVICE, LIVENESS_SERVICE, ExtProcServer, ExtProcSettings
from weir.ports import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def status(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def test_liveness_is_serving_while_readiness_waits_for_the_control_plane() -> None:
    # A control plane that is not there: the config never arrives.
    settings = ExtProcSettings("127.0.0.1:0", f"127.0.0.1:{free_port()}", "extproc-test")
    server = ExtProcServer(settings)
    running = asyncio.create_task(server.run())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{await bound(server)}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                if await status(stub, LIVENESS_SERVICE) == SERVING:
                    break
                await asyncio.sleep(0.05)
            assert await status(stub, LIVENESS_SERVICE) == SERVING
            assert await status(stub, HEALTH_SERVICE) == NOT_SERVING
            assert await status(stub, "") == NOT_SERVING
            # What the control plane's first config does.
            await server._on_applied()
            assert await status(stub, HEALTH_SERVICE) == SERVING
            assert await status(stub, LIVENESS_SERVICE) == SERVING
    finally:
        server.stop()
        await asyncio.wait_for(running, timeout=30)


async def bound(server: ExtProcServer) -> int:
    for _ in range(200):
        if server.bound_port:
            return server.bound_port
        await asyncio.sleep(0.01)
    raise AssertionError("the server never bound its port")
