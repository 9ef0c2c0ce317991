"""The `weir` command: up | validate | keys | requests | controlplane | extproc | mock-llm."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from weir import keys_cli, policy_cli
from weir.supervisor import REDIS_URL_ENV


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_validate(args: argparse.Namespace) -> int:
    from controlplane.errors import ConfigInvalid
    from controlplane.source_files import load_directory

    try:
        config = load_directory(Path(args.directory), os.environ)
    except ConfigInvalid as error:
        print(f"{len(error.errors)} error(s) in {args.directory}:", file=sys.stderr)
        for item in error.errors:
            print(f"  {item}", file=sys.stderr)
        return 1
    counts = (
        (len(config.backends), "Backend(s)"),
        (len(config.endpoints), "Endpoint(s)"),
        (len(config.policies), "Policy(ies)"),
        (len(config.pii_policies), "PIIPolicy(ies)"),
        (len(config.service_tiers), "ServiceTier(s)"),
        (len(config.secrets), "Secret(s)"),
    )
    print(f"{args.directory}: OK ({', '.join(f'{n} {kind}' for n, kind in counts)})")
    return 0


def _cmd_controlplane(args: argparse.Namespace) -> int:
    from controlplane.dataplane import Address, DataPlaneSettings
    from controlplane.kube_api import default_namespace
    from controlplane.server import ControlPlaneSettings, KubernetesSettings, serve

    _logging(args.verbose)
    kubernetes = None
    if args.source == "kubernetes":
        kubernetes = KubernetesSettings(
            namespace=args.namespace or default_namespace(),
            identity=args.identity or os.environ.get("POD_NAME") or socket.gethostname(),
            kubeconfig=args.kubeconfig,
            lease_name=args.lease_name,
            leader_election=not args.no_leader_election,
        )
    elif args.config is None:
        print("weir controlplane: --config is required with --source files", file=sys.stderr)
        return 2
    settings = ControlPlaneSettings(
        config_dir=Path(args.config) if args.config else None,
        xds=Address.parse(args.xds_address),
        dataplane=DataPlaneSettings(
            listener=Address.parse(args.listen),
            extproc=tuple(Address.parse(a) for a in args.extproc_address),
            extproc_message_timeout_ms=args.extproc_message_timeout_ms,
            max_request_bytes=args.max_request_bytes,
        ),
        store_path=Path(args.store),
        management=Address.parse(args.management_address) if args.management_address else None,
        kubernetes=kubernetes,
    )
    asyncio.run(serve(settings))
    return 0


def _cmd_extproc(args: argparse.Namespace) -> int:
    from extproc.server import ExtProcSettings, serve

    _logging(args.verbose)
    records = Path(args.records) if args.records else None
    asyncio.run(
        serve(
            ExtProcSettings(
                args.listen,
                args.control_plane,
                args.node_id,
                records_path=records,
                metrics_address=args.metrics_address,
                redis_url=os.environ.get(REDIS_URL_ENV) or None,
                limit_store_failure=args.limit_store_failure,
                grace_s=args.grace_s,
            )
        )
    )
    return 0


def _cmd_envoy(args: argparse.Namespace) -> int:
    from weir.envoy_launch import default_node_id, exec_envoy, parse_host_port

    try:
        parse_host_port(args.control_plane)
    except ValueError as error:
        print(f"weir envoy: --control-plane: {error}", file=sys.stderr)
        return 2
    exec_envoy(
        args.control_plane,
        node_id=args.node_id or default_node_id(os.environ),
        admin_port=args.admin_port,
        ready_port=args.ready_port or None,
        concurrency=args.concurrency,
        drain_time_s=args.drain_time_s,
        bootstrap_path=Path(args.bootstrap_path) if args.bootstrap_path else None,
    )
    return 0  # not reached: Envoy replaced this process


def _cmd_requests_tail(args: argparse.Namespace) -> int:
    from controlplane.keystore import default_store_path
    from weir.requests_tail import tail

    return tail(
        default_store_path(Path(args.state_dir)),
        lines=args.lines,
        follow=not args.no_follow,
        as_json=args.json,
    )


def _cmd_mock_llm(args: argparse.Namespace) -> int:
    from weir.mock_llm import MockSettings, serve

    serve(
        args.host,
        args.port,
        MockSettings(ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms, behavior=args.behavior),
    )
    return 0


def _endpoints_of(config_dir: Path) -> object:
    def endpoints(environ: dict[str, str]) -> list[tuple[str, str, list[str]]]:
        from controlplane.source_files import load_directory

        config = load_directory(config_dir, environ)
        return [(e.project, e.slug, [m.name for m in e.models]) for e in config.endpoints]

    return endpoints


def _cmd_up(args: argparse.Namespace) -> int:
    from controlplane.dataplane import Address, DataPlaneSettings
    from controlplane.errors import ConfigInvalid, KeyStoreError
    from controlplane.publisher import generate
    from controlplane.source_files import load_directory
    from weir.first_keys import first_keys
    from weir.supervisor import UpSettings, run_up

    config_dir = Path(args.config)
    try:
        ipaddress.IPv4Address(args.host)
    except ValueError:
        print(
            f"weir up: --host must be an IPv4 address (Envoy listens on an address, not a "
            f"name), e.g. 127.0.0.1 or 0.0.0.0; got {args.host!r}",
            file=sys.stderr,
        )
        return 2
    # Fail fast on bad config, before anything starts (the mock's URL is not known yet,
    # so a placeholder stands in for it).
    environ = {"WEIR_MOCK_LLM_URL": "http://127.0.0.1:1/v1", **os.environ}
    dataplane = DataPlaneSettings(
        listener=Address(args.host, args.port),
        extproc=(Address("127.0.0.1", 1),),
        extproc_message_timeout_ms=args.extproc_message_timeout_ms,
        max_request_bytes=args.max_request_bytes,
    )
    try:
        # Loading validates the resources; translating them as the control plane will
        # also checks that every provider key the config names is in the environment.
        config = load_directory(config_dir, environ)
        generate(config, dataplane, environ)
    except ConfigInvalid as error:
        print(f"weir up: the config in {config_dir} is invalid:", file=sys.stderr)
        for item in error.errors:
            print(f"  {item}", file=sys.stderr)
        return 2
    except Exception as error:  # what the control plane would choke on: say it now
        print(f"weir up: the config in {config_dir} cannot be used: {error}", file=sys.stderr)
        return 2
    try:
        new_keys = first_keys(Path(args.state_dir), config.endpoints)
    except KeyStoreError as error:
        print(f"weir up: {error}", file=sys.stderr)
        return 2
    settings = UpSettings(
        config_dir=config_dir,
        host=args.host,
        port=args.port,
        state_dir=Path(args.state_dir),
        xds_port=args.xds_port,
        extproc_port=args.extproc_port,
        admin_port=args.admin_port,
        management_port=args.management_port,
        mock_port=args.mock_port,
        extproc_replicas=args.extproc_replicas,
        start_mock=not args.no_mock,
        mock_ttft_ms=args.mock_ttft_ms,
        mock_tpot_ms=args.mock_tpot_ms,
        max_request_bytes=args.max_request_bytes,
        extproc_message_timeout_ms=args.extproc_message_timeout_ms,
        redis_url=args.redis_url,
        limit_store_failure=args.limit_store_failure,
        verbose=args.verbose,
    )
    return asyncio.run(
        run_up(settings, _endpoints_of(config_dir), new_keys)  # type: ignore[arg-type]
    )


def _in_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _limit_store_failure_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit-store-failure",
        choices=("open", "closed"),
        default="open",
        help="with Redis unreachable: open = keep limiting with each replica's own "
        "counters; closed = answer 503 and forward nothing",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weir", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack: mock LLM, control plane, ext_proc, Envoy")
    up.add_argument("--config", default="examples/quickstart", help="config directory")
    up.add_argument("--host", default="127.0.0.1", help="Envoy listener address")
    up.add_argument("--port", type=int, default=8080, help="Envoy listener port")
    up.add_argument("--state-dir", default=".weir", help="where state and logs live")
    up.add_argument("--xds-port", type=int, default=0, help="0 = pick a free port")
    up.add_argument("--extproc-port", type=int, default=0, help="0 = pick a free port")
    up.add_argument("--admin-port", type=int, default=0, help="Envoy admin; 0 = free port")
    up.add_argument("--mock-port", type=int, default=0, help="0 = pick a free port")
    up.add_argument("--management-port", type=int, default=0, help="0 = pick a free port")
    up.add_argument(
        "--extproc-replicas",
        type=_in_range(1, 16),
        default=1,
        help="how many ext_proc processes Envoy balances over",
    )
    up.add_argument("--no-mock", action="store_true", help="do not start the mock LLM")
    up.add_argument(
        "--max-request-bytes",
        type=_in_range(1024, 1 << 30),
        default=8 << 20,
        help="largest request body Envoy buffers; larger gets 413",
    )
    up.add_argument(
        "--extproc-message-timeout-ms",
        type=_in_range(1, 3_600_000),
        default=5000,
        help="how long Envoy waits for each ext_proc reply",
    )
    up.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_URL_ENV) or None,
        help="share rate-limit counters of every ext_proc replica in this Redis "
        f"(redis://[:password@]host:port/db; default ${REDIS_URL_ENV}; unset: in-process)",
    )
    _limit_store_failure_flag(up)
    up.add_argument("--mock-ttft-ms", type=float, default=0.0)
    up.add_argument("--mock-tpot-ms", type=float, default=0.0)
    up.add_argument("-v", "--verbose", action="store_true", help="echo every part's output")
    up.set_defaults(func=_cmd_up)

    validate = sub.add_parser("validate", help="check a config directory; list every error")
    validate.add_argument("directory")
    validate.set_defaults(func=_cmd_validate)

    plane = sub.add_parser("controlplane", help="run the xDS control plane")
    plane.add_argument(
        "--source",
        choices=("files", "kubernetes"),
        default="files",
        help="where the config comes from: a directory (--config) or the Kubernetes API",
    )
    plane.add_argument("--config", help="config directory (hot-reloaded), with --source files")
    plane.add_argument(
        "--namespace",
        help="with --source kubernetes: the namespace watched "
        "(default: $POD_NAMESPACE, else the pod's own, else default)",
    )
    plane.add_argument(
        "--kubeconfig",
        help="with --source kubernetes: a kubeconfig file "
        "(default: the pod's service account, else $KUBECONFIG or ~/.kube/config)",
    )
    plane.add_argument(
        "--identity", help="this replica's name for leader election (default: $POD_NAME)"
    )
    plane.add_argument(
        "--lease-name", default="weir-controlplane", help="the leader-election Lease"
    )
    plane.add_argument(
        "--no-leader-election",
        action="store_true",
        help="write status without electing a leader (only for a single replica)",
    )
    plane.add_argument("--xds-address", default="127.0.0.1:18000")
    plane.add_argument("--listen", default="127.0.0.1:8080", help="Envoy listener host:port")
    plane.add_argument(
        "--extproc-address",
        action="append",
        required=True,
        help="an ext_proc replica host:port (repeatable)",
    )
    plane.add_argument("--extproc-message-timeout-ms", type=_in_range(1, 3_600_000), default=5000)
    plane.add_argument("--max-request-bytes", type=_in_range(1024, 1 << 30), default=8 << 20)
    plane.add_argument(
        "--store",
        default=".weir/weir.db",
        help="the key store (SQLite file); a postgresql:// URL in WEIR_STORE_URL wins over it",
    )
    plane.add_argument(
        "--management-address", help="host:port to serve the management API on (default: off)"
    )
    plane.add_argument("-v", "--verbose", action="store_true")
    plane.set_defaults(func=_cmd_controlplane)

    extproc = sub.add_parser("extproc", help="run the ext_proc gRPC server")
    extproc.add_argument("--listen", default="127.0.0.1:18080")
    extproc.add_argument("--control-plane", default="127.0.0.1:18000")
    extproc.add_argument("--node-id", default=f"extproc-{os.getpid()}")
    extproc.add_argument("--records", help="SQLite file to write request records to")
    extproc.add_argument(
        "--metrics-address", help="host:port to serve Prometheus metrics on (GET /metrics)"
    )
    _limit_store_failure_flag(extproc)
    extproc.add_argument(
        "--grace-s",
        type=float,
        default=5.0,
        help="on SIGTERM, how long requests in flight (streams too) may finish (default 5)",
    )
    extproc.add_argument("-v", "--verbose", action="store_true")
    extproc.set_defaults(func=_cmd_extproc)

    envoy = sub.add_parser(
        "envoy", help="run Envoy configured by a control plane (as its container does)"
    )
    envoy.add_argument(
        "--control-plane",
        default="127.0.0.1:18000",
        help="host:port of the xDS server; the host may be a DNS name (resolved by Envoy)",
    )
    envoy.add_argument(
        "--node-id", help="this Envoy's xDS node id (default: $POD_NAME, else the host name)"
    )
    envoy.add_argument(
        "--admin-port", type=_in_range(1, 65535), default=19000, help="admin, on 127.0.0.1"
    )
    envoy.add_argument(
        "--ready-port",
        type=_in_range(0, 65535),
        default=0,
        help="serve GET /ready on 0.0.0.0:PORT (200 live, 503 draining); 0 = none",
    )
    envoy.add_argument("--concurrency", type=_in_range(1, 1024), default=2, help="worker threads")
    envoy.add_argument(
        "--drain-time-s",
        type=_in_range(1, 3600),
        help="how long a graceful drain spreads closing connections over (Envoy's default: 600)",
    )
    envoy.add_argument(
        "--bootstrap-path", help="where to write the bootstrap (default: a new temp directory)"
    )
    envoy.set_defaults(func=_cmd_envoy)

    keys_cli.add_parser(sub)
    policy_cli.add_parser(sub)

    requests = sub.add_parser("requests", help="request records")
    requests_actions = requests.add_subparsers(dest="requests_command", required=True)
    tail = requests_actions.add_parser("tail", help="print request records as they arrive")
    tail.add_argument("--state-dir", default=".weir")
    tail.add_argument("-n", "--lines", type=int, default=10, help="records shown first")
    tail.add_argument("--no-follow", action="store_true", help="print and exit")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=_cmd_requests_tail)

    mock = sub.add_parser("mock-llm", help="run the OpenAI-compatible mock LLM")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9100)
    mock.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    mock.add_argument("--tpot-ms", type=float, default=0.0, help="time per output token")
    mock.add_argument(
        "--behavior",
        default="default",
        choices=("default", "echo", "error-429", "error-500", "hang"),
        help="what requests without X-Mock-Behavior get (e.g. error-500: a provider down)",
    )
    mock.set_defaults(func=_cmd_mock_llm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
