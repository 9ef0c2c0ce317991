"""`weir keys create|list|revoke|rotate`: manage API keys in the store under --state-dir,
or in the PostgreSQL database that WEIR_STORE_URL names (as the control plane does).

The CLI writes the store directly, so it works whether or not the stack is running; a
running control plane notices the change within a fraction of a second and pushes it to
every ext_proc replica. A new key is printed once and never again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Final

from controlplane.api_keys import SCOPES, StoredKey, now_ms
from controlplane.errors import KeyStoreError
from controlplane.keystore import (
    STORE_URL_ENV,
    SqlKeyStore,
    check_scopes,
    open_key_store,
    store_location,
)

_DURATION: Final = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_DURATION_MS: Final = 10 * 365 * 86_400_000


def parse_duration_ms(text: str) -> int:
    """`90s`, `15m`, `12h`, `30d` → milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 15m, 12h or 30d, got {text!r}"
        )
    value = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if value > MAX_DURATION_MS:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 10 years")
    return value


def parse_scopes(text: str) -> tuple[str, ...]:
    try:
        return check_scopes(tuple(s.strip() for s in text.split(",") if s.strip()))
    except KeyStoreError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _store(args: argparse.Namespace) -> SqlKeyStore:
    return open_key_store(store_location(Path(args.state_dir), os.environ))


def _show_new(stored: StoredKey, key: str, as_json: bool, replaces: str | None = None) -> None:
    if as_json:
        body = {**stored.public(now_ms()), "key": key}
        if replaces:
            body["replaces"] = replaces
        print(json.dumps(body))
        return
    print(key)
    expires = "never" if stored.expires_at_ms is None else _when(stored.expires_at_ms)
    print(
        f"id {stored.id}, project {stored.project}, scopes {','.join(stored.scopes)}, "
        f"expires {expires}. This is the only time the key is shown: store it now.",
        file=sys.stderr,
    )


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_create(args: argparse.Namespace) -> int:
    expires = now_ms() + args.expires if args.expires is not None else None
    store = _store(args)
    try:
        stored, key = store.create(args.project, args.scopes, args.name or "", expires)
    finally:
        store.close()
    _show_new(stored, key, args.json)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        keys = store.list(args.project)
    finally:
        store.close()
    now = now_ms()
    if args.json:
        print(json.dumps({"object": "list", "data": [k.public(now) for k in keys]}))
        return 0
    if not keys:
        print("no API keys" + (f" for project {args.project}" if args.project else ""))
        return 0
    print(f"{'ID':<21} {'PROJECT':<16} {'PREFIX':<20} {'SCOPES':<21} {'STATE':<8} {'NAME'}")
    for k in keys:
        print(
            f"{k.id:<21} {k.project:<16} {k.prefix + '...':<20} {','.join(k.scopes):<21} "
            f"{k.state(now):<8} {k.name}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        stored = store.revoke(args.key_id)
    finally:
        store.close()
    print(f"revoked {stored.id} ({stored.prefix}...)")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        stored, key = store.rotate(args.key_id, args.grace)
    finally:
        store.close()
    _show_new(stored, key, args.json, replaces=args.key_id)
    if not args.json:
        print(f"{args.key_id} stays valid for the grace period, then expires.", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        code: int = args.keys_func(args)
    except KeyStoreError as error:
        print(f"weir keys: {error}", file=sys.stderr)
        return 1
    return code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list, revoke and rotate API keys")
    keys.set_defaults(func=run)
    actions = keys.add_subparsers(dest="keys_command", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument(
            "--state-dir",
            default=".weir",
            help=f"where the key store lives (unless {STORE_URL_ENV} names a PostgreSQL one)",
        )
        return parser

    create = action("create", "create a key; it is printed once")
    create.add_argument("--project", required=True)
    create.add_argument(
        "--scopes",
        type=parse_scopes,
        default=("inference",),
        help=f"comma-separated: {', '.join(SCOPES)} (default inference)",
    )
    create.add_argument("--expires", type=parse_duration_ms, help="e.g. 30d, 12h; default never")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    create.set_defaults(keys_func=cmd_create)

    listing = action("list", "list keys (never the keys themselves)")
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(keys_func=cmd_list)

    revoke = action("revoke", "revoke a key; every replica refuses it within a second")
    revoke.add_argument("key_id")
    revoke.set_defaults(keys_func=cmd_revoke)

    rotate = action(
        "rotate",
        "replace a key (same project, scopes, name and expiry); the old one stays valid "
        "for a grace period",
    )
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=parse_duration_ms, default=86_400_000, help="default 24h")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(keys_func=cmd_rotate)
