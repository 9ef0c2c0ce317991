"""The directory config source: `*.yaml` / `*.yml` files in one directory, hot-reloaded.

Files
    Every `*.yaml` and `*.yml` file directly in the directory (not in subdirectories), in name
    order. Names starting with '.' are skipped: editors' temp and lock files, and the `..data`
    links of a Kubernetes ConfigMap volume (whose files themselves are read, through their
    symlinks). A file may hold several resources separated by `---`; empty documents are skipped.
    A mapping with the same key twice is an error rather than "last one wins".

Environment variables
    Before parsing, `${NAME}` in a file's text is replaced by the variable's value from the
    `environ` given (normally `os.environ`). That is how the quickstart points its Backend at the
    mock LLM whose port is only known at start time (`baseURL: ${WEIR_MOCK_LLM_URL}`). The value
    is inserted verbatim, so quote it in YAML if it may contain special characters.
    `$${` stands for a literal `${`. An undefined variable, or a malformed reference such as
    `${NAME:-default}` (not supported), is an error naming the file, the line and the variable.
    Lines that are whole-line comments (first non-blank character `#`) are left alone, so
    commenting out a line that uses a variable never breaks the config. Variables are read
    when files are (re)loaded; changing a variable alone does not trigger a reload.

Errors
    Problems are collected across all files and raised (or yielded) as one `ConfigInvalid`.
    A missing directory, or one without any resource, is an error as well: a running gateway
    keeps its last good config instead of silently serving nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import stat
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from controlplane.errors import UNKNOWN, ConfigError, ConfigInvalid
from controlplane.model import ConfigSet
from controlplane.validate import validate_documents

log = logging.getLogger("weir.controlplane.source")

__all__ = ["DirectorySource", "load_directory"]

CONFIG_SUFFIXES: Final = (".yaml", ".yml")

# A file whose mtime is this close to when we read it may be rewritten later within the same
# timestamp tick (same size and mtime, new bytes): such files are re-read on every poll until
# they are older than this ("racy git" problem). Config files are small, so this is cheap.
_RACY_NS: Final = 2_000_000_000


# --- ${VAR} expansion -------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}\n]*)(\}?)")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace `${NAME}` references; return the new text and one message per bad reference."""
    problems: list[str] = []
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue

        def replace(match: re.Match[str], lineno: int = lineno) -> str:
            if match.group(0) == "$${":
                return "${"
            name, closed = match.group(1), match.group(2)
            if not closed:
                problems.append(f"line {lineno}: unterminated ${{ (write $${{ for a literal ${{)")
            elif not _VAR_NAME.fullmatch(name):
                problems.append(
                    f"line {lineno}: invalid variable reference ${{{name}}}: use ${{NAME}} with "
                    "letters, digits and '_' (write $${ for a literal ${)"
                )
            elif name not in environ:
                problems.append(f"line {lineno}: undefined environment variable ${{{name}}}")
            else:
                return environ[name]
            return match.group(0)

        out.append(_REFERENCE.sub(replace, line))
    return "".join(out), problems


# --- YAML -------------------------------------------------------------------------------------

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that rejects duplicate keys in a mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error_message(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"invalid YAML: {error}"
    mark = error.problem_mark
    message = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    if error.context:
        where = f" at line {error.context_mark.line + 1}" if error.context_mark else ""
        message += f" ({error.context}{where})"
    return message


def _parse(text: str) -> tuple[list[tuple[int, Any]], str | None]:
    """Every non-empty document with its first line, then the syntax error if any.

    Equivalent to `yaml.safe_load_all` (plus duplicate-key detection), but keeps line numbers.
    Documents before a syntax error are returned too.
    """
    docs: list[tuple[int, Any]] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is not None:
                docs.append((node.start_mark.line + 1, data))
    except yaml.YAMLError as e:
        return docs, _yaml_error_message(e)
    except RecursionError:
        return docs, "the YAML is nested too deeply to read"
    finally:
        loader.dispose()
    return docs, None


# --- reading the directory --------------------------------------------------------------------


def _file_error(file: str, message: str) -> ConfigError:
    return ConfigError(file, UNKNOWN, UNKNOWN, "", message)


@dataclass(frozen=True)
class _Cached:
    stat_key: tuple[int, int, int, int]  # size, mtime_ns, inode, device
    read_at_ns: int
    data: bytes
    digest: str


@dataclass(frozen=True)
class _Snapshot:
    """The directory's config files at one moment."""

    files: tuple[tuple[Path, bytes], ...] = ()
    errors: tuple[ConfigError, ...] = ()  # unreadable directory or files
    fingerprint: tuple[tuple[str, str], ...] = ()  # changes exactly when the content does


@dataclass
class _Reader:
    """Reads a config directory; re-reads only files whose stat changed (or may have)."""

    directory: Path
    cache: dict[str, _Cached] = field(default_factory=dict)

    def read(self) -> _Snapshot:
        now = time.time_ns()
        directory = self.directory
        try:
            if not directory.is_dir():
                problem = "is not a directory" if directory.exists() else "does not exist"
                return self._failed(f"config directory {problem}")
            paths = sorted(
                p
                for p in directory.iterdir()
                if p.suffix in CONFIG_SUFFIXES and not p.name.startswith(".")
            )
        except OSError as e:
            return self._failed(f"cannot list the config directory: {e.strerror or e}")

        cache: dict[str, _Cached] = {}
        files: list[tuple[Path, bytes]] = []
        errors: list[ConfigError] = []
        fingerprint: list[tuple[str, str]] = []
        for path in paths:
            try:
                st = path.stat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                entry = self.cache.get(path.name)
                if (
                    entry is None
                    or entry.stat_key != key
                    or (entry.read_at_ns - st.st_mtime_ns < _RACY_NS)
                ):
                    data = path.read_bytes()
                    entry = _Cached(key, now, data, hashlib.sha256(data).hexdigest())
            except FileNotFoundError:
                continue  # removed since listed, or a dangling symlink
            except OSError as e:
                errors.append(_file_error(str(path), f"cannot read file: {e.strerror or e}"))
                fingerprint.append((path.name, f"!{e.strerror or e}"))
                continue
            cache[path.name] = entry
            files.append((path, entry.data))
            fingerprint.append((path.name, entry.digest))
        self.cache = cache
        return _Snapshot(tuple(files), tuple(errors), tuple(fingerprint))

    def _failed(self, message: str) -> _Snapshot:
        self.cache = {}
        return _Snapshot(
            errors=(_file_error(str(self.directory), message),),
            fingerprint=(("", f"!{message}"),),
        )


def _describe_value(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"the value {value!r}"[:60]


def _build(directory: Path, snapshot: _Snapshot, environ: Mapping[str, str]) -> ConfigSet:
    """Expand, parse and validate a snapshot's files; raise `ConfigInvalid` with every error."""
    errors = list(snapshot.errors)
    if not snapshot.files:
        if not errors:
            errors.append(_file_error(str(directory), "no *.yaml or *.yml files in directory"))
        raise ConfigInvalid(errors)

    docs: list[tuple[str, Any]] = []
    for path, data in snapshot.files:
        file = str(path)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            errors.append(_file_error(file, f"not UTF-8 text: invalid byte on line {line}"))
            continue
        text, problems = _expand(text, environ)
        if problems:
            errors.extend(_file_error(file, p) for p in problems)
            continue
        parsed, syntax_error = _parse(text)
        if syntax_error is not None:
            errors.append(_file_error(file, syntax_error))
        for line, body in parsed:
            if isinstance(body, dict):
                docs.append((file, body))
            else:
                what = _describe_value(body)
                errors.append(
                    _file_error(
                        file,
                        f"document at line {line}: expected a mapping (a resource with "
                        f"apiVersion, kind, metadata and spec), got {what}",
                    )
                )

    if not docs and not errors:
        raise ConfigInvalid([_file_error(str(directory), "no resources in *.yaml or *.yml files")])

    try:
        config = validate_documents(docs, partial=bool(errors))
    except ConfigInvalid as e:
        errors.extend(e.errors)
    if errors:
        # One file's errors together, files in load order (file-level errors first).
        order = {str(path): i for i, (path, _) in enumerate(snapshot.files)}
        errors.sort(key=lambda err: order.get(err.file, -1))
        raise ConfigInvalid(errors)
    return config


# --- public API -------------------------------------------------------------------------------


def load_directory(path: Path, environ: Mapping[str, str]) -> ConfigSet:
    """Load and validate every config file in `path` once; raise `ConfigInvalid` if bad."""
    return _build(path, _Reader(path).read(), environ)


class DirectorySource:
    """A config directory, watched by polling (no third-party watcher, works everywhere).

    Each poll stats the files and re-reads only those whose size, mtime or inode changed (plus
    recently modified ones, whose timestamps cannot be trusted yet). A new result is produced
    only when the set of files or their bytes changed: rewriting identical bytes, or `touch`,
    produces nothing. Replacing a file by renaming a temp file over it (as many editors do),
    adding and deleting files are all noticed within about `interval` seconds.

    A file caught half-written may produce a `ConfigInvalid`, followed by the good result at
    the next poll; consumers keep their last good config on `ConfigInvalid` anyway.
    """

    def __init__(self, path: Path, environ: Mapping[str, str], interval: float = 0.2) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.path = path
        self.environ = environ
        self.interval = interval

    async def watch(self) -> AsyncIterator[ConfigSet | ConfigInvalid]:
        """Yield the first load's result at once, then one result per content change.

        Runs until cancelled (or closed). The same `ConfigSet` may be yielded twice (e.g. after
        a comment-only edit); deduplicate downstream if that matters. File I/O runs in a worker
        thread so the event loop never blocks on the disk.
        """
        reader = _Reader(self.path)
        last: tuple[tuple[str, str], ...] | None = None
        while True:
            snapshot = await asyncio.to_thread(reader.read)
            if snapshot.fingerprint != last:
                last = snapshot.fingerprint
                yield await asyncio.to_thread(self._result, snapshot)
            await asyncio.sleep(self.interval)

    def _result(self, snapshot: _Snapshot) -> ConfigSet | ConfigInvalid:
        try:
            return _build(self.path, snapshot, self.environ)
        except ConfigInvalid as e:
            return e
        except Exception as e:  # whatever a file holds, it must not stop the source
            log.exception("reading %s failed", self.path)
            return ConfigInvalid(
                (_file_error(str(self.path), f"the config could not be read: {e!r}"),)
            )
