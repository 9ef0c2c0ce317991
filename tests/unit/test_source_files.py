"""The directory source: loading, ${VAR} expansion, error reporting and the polling watcher."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.errors import ConfigError, ConfigInvalid
from controlplane.model import (
    AutoRouting,
    Backend,
    BackendModel,
    ConfigSet,
    Endpoint,
    Limits,
    ModelAlias,
    ModelTarget,
    Pricing,
)
from controlplane.source_files import DirectorySource, load_directory

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
QUICKSTART = ROOT / "examples" / "quickstart"
INVALID = sorted((FIXTURES / "invalid").glob("*/*.yaml"))
MOCK_URL = "http://127.0.0.1:43210/v1"

BACKEND = """\
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: mock}
spec:
  baseURL: http://127.0.0.1:9000/v1
  models:
    - name: mock-gpt
"""
ENDPOINT = """\
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: demo-chat}
spec:
  project: demo
  slug: chat
  models:
    - name: gpt-4o
      targets: [{backend: mock, model: mock-gpt}]
"""


def load_errors(directory: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The errors of loading `directory`, with the directory prefix removed from file names."""
    with pytest.raises(ConfigInvalid) as info:
        load_directory(directory, environ or {})
    return [str(e).replace(f"{directory}{os.sep}", "") for e in info.value.errors]


# --- loading ----------------------------------------------------------------------------------


def test_valid_fixture_directory() -> None:
    directory = FIXTURES / "valid"
    backends = str(directory / "backends.yaml")
    endpoints = str(directory / "endpoints.yml")
    config = load_directory(directory, {"LOCAL_LLM_URL": "http://127.0.0.1:8081/v1"})
    assert config == ConfigSet(
        backends=(
            Backend(
                name="openai",
                base_url="https://api.openai.com/v1",
                models=(
                    BackendModel(
                        name="gpt-4o-mini",
                        context_window=128000,
                        max_output_tokens=16384,
                        pricing=Pricing(input=0.15, cached_input=0.075, output=0.6),
                        tier="standard",
                    ),
                    BackendModel(
                        name="gpt-4o",
                        context_window=128000,
                        max_output_tokens=16384,
                        pricing=Pricing(input=2.5, cached_input=0.0, output=10.0),
                        tier="premium",
                    ),
                ),
                api_key_env="OPENAI_API_KEY",
                timeout_seconds=120.0,
                connect_timeout_seconds=0.5,
                weight=3,
                source_file=backends,
            ),
            Backend(
                name="local",
                base_url="http://127.0.0.1:8081/v1",
                models=(BackendModel(name="llama-3.1-8b"),),
                source_file=backends,
            ),
        ),
        endpoints=(
            Endpoint(
                name="demo-chat",
                project="demo",
                slug="chat",
                models=(
                    ModelAlias(
                        name="gpt-4o-mini",
                        targets=(
                            ModelTarget(backend="openai", model="gpt-4o-mini"),
                            ModelTarget(backend="local", model="llama-3.1-8b"),
                        ),
                    ),
                    ModelAlias(
                        name="gpt-4o", targets=(ModelTarget(backend="openai", model="gpt-4o"),)
                    ),
                ),
                source_file=endpoints,
            ),
            Endpoint(
                name="team-a-assistant",
                project="team-a",
                slug="assistant",
                models=(
                    ModelAlias(
                        name="local/llama",
                        targets=(ModelTarget(backend="local", model="llama-3.1-8b"),),
                    ),
                ),
                source_file=endpoints,
            ),
        ),
    )


def test_quickstart_loads() -> None:
    config = load_directory(QUICKSTART, {"WEIR_MOCK_LLM_URL": MOCK_URL})
    (mock,) = config.backends
    assert mock.name == "mock"
    assert mock.base_url == MOCK_URL
    assert mock.api_key_env is None
    assert mock.models == (
        BackendModel(
            name="mock-gpt",
            context_window=128000,
            max_output_tokens=4096,
            pricing=Pricing(input=0.15, cached_input=0.075, output=0.60),
            tier="premium",
        ),
        BackendModel(name="mock-gpt-mini", pricing=Pricing(input=0.02, output=0.08), tier="basic"),
    )
    demo, trial = config.endpoints
    assert demo.auto == AutoRouting(models=("gpt-4o-mini", "gpt-4o"), mode="balanced")
    assert (demo.name, demo.project, demo.slug) == ("demo-chat", "demo", "chat")
    assert {alias.name: alias.targets for alias in demo.models} == {
        "gpt-4o-mini": (ModelTarget("mock", "mock-gpt-mini"),),
        "gpt-4o": (ModelTarget("mock", "mock-gpt"),),
        "mock-gpt": (ModelTarget("mock", "mock-gpt"),),
    }
    # demo/trial serves the same models under the `trial` tier's limits
    assert (trial.name, trial.slug, trial.service_tier) == ("demo-trial", "trial", "trial")
    assert trial.models == demo.models
    assert demo.service_tier is None
    (tier,) = config.service_tiers
    assert tier.per_key == Limits(
        requests_per_minute=5, tokens_per_minute=2000, concurrent_requests=2
    )
    assert tier.per_project == Limits(requests_per_minute=60)


def test_quickstart_needs_the_mock_url() -> None:
    errors = load_errors(QUICKSTART, {})
    assert len(errors) == 1
    assert errors[0].startswith("backends.yaml: ?/?: (resource): line ")
    assert errors[0].endswith(": undefined environment variable ${WEIR_MOCK_LLM_URL}")


@pytest.mark.parametrize("fixture", INVALID, ids=[f"{f.parent.name}/{f.stem}" for f in INVALID])
def test_invalid_fixture(fixture: Path, tmp_path: Path) -> None:
    """Each fixture's `# expect:` lines are its errors, in order (each a prefix of one)."""
    expected = [
        line.removeprefix("# expect: ")
        for line in fixture.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    assert expected, f"{fixture} has no '# expect:' line"
    assert fixture.read_text().startswith("# What's wrong: ")
    shutil.copy(fixture, tmp_path / fixture.name)
    with pytest.raises(ConfigInvalid) as info:
        load_directory(tmp_path, {})
    errors = info.value.errors
    assert all(e.file == str(tmp_path / fixture.name) for e in errors)
    got = [str(e).removeprefix(f"{e.file}: ") for e in errors]
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(want), got


def test_every_error_of_a_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a-backend.yaml").write_text(BACKEND.replace("9000/v1", "9000/v1?x=1"))
    (tmp_path / "b-broken.yaml").write_text("apiVersion: weir.dev/v1alpha1\nkind: [Backend\n")
    (tmp_path / "c-env.yaml").write_text(BACKEND.replace("name: mock}", "name: ${NAME}}"))
    (tmp_path / "d-endpoint.yaml").write_text(
        ENDPOINT.replace("model: mock-gpt", "model: mock-gpt-2").replace("slug: chat", "slug: C")
    )
    (tmp_path / "e-endpoint.yaml").write_text(
        # An unknown Backend is not reported while some file is unreadable: it may be there.
        ENDPOINT.replace("backend: mock", "backend: elsewhere").replace("demo-chat", "e2")
    )
    assert load_errors(tmp_path) == [
        "a-backend.yaml: Backend/mock: spec.baseURL: 'http://127.0.0.1:9000/v1?x=1' is not a "
        "valid URL: use http:// or https:// with a host, an optional port and an optional "
        "path, like https://api.openai.com/v1",
        "b-broken.yaml: ?/?: (resource): invalid YAML at line 3, column 1: expected ',' or ']', "
        "but got '<stream end>' (while parsing a flow sequence at line 2)",
        "c-env.yaml: ?/?: (resource): line 3: undefined environment variable ${NAME}",
        "d-endpoint.yaml: Endpoint/demo-chat: spec.models[0].targets[0].model: Backend 'mock' "
        "does not serve model 'mock-gpt-2' (it serves: mock-gpt)",
        "d-endpoint.yaml: Endpoint/demo-chat: spec.slug: 'C' is not a valid name: use at most "
        "63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    ]


def test_error_objects_name_file_resource_and_path(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BACKEND + "  weight: 0\n")
    with pytest.raises(ConfigInvalid) as info:
        load_directory(tmp_path, {})
    assert info.value.errors == (
        ConfigError(
            str(tmp_path / "b.yaml"), "Backend", "mock", "spec.weight", "must be at least 1, got 0"
        ),
    )


def test_files_are_read_in_name_order(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "c.yaml"):
        (tmp_path / name).write_text(BACKEND.replace("name: mock", f"name: {name[0]}"))
    config = load_directory(tmp_path, {})
    assert [b.name for b in config.backends] == ["a", "b", "c"]
    assert [b.source_file for b in config.backends] == [
        str(tmp_path / n) for n in ("a.yml", "b.yaml", "c.yaml")
    ]


def test_only_visible_yaml_files_directly_in_the_directory(tmp_path: Path) -> None:
    (tmp_path / "backend.yaml").write_text(BACKEND)
    for ignored in ("notes.txt", "backend.yaml.bak", "backend.yaml~", ".hidden.yaml", "x.json"):
        (tmp_path / ignored).write_text("this is: [not valid")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.yaml").write_text("this is: [not valid")
    (tmp_path / "dir.yaml").mkdir()  # a directory, despite its name
    (tmp_path / ".#lock.yaml").symlink_to("nowhere")  # an editor's lock file
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    assert [b.name for b in load_directory(tmp_path, {}).backends] == ["mock"]


def test_symlinked_files_are_followed(tmp_path: Path) -> None:
    # Like a Kubernetes ConfigMap volume: visible names are links into a hidden directory.
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "backend.yaml").write_text(BACKEND)
    (tmp_path / "backend.yaml").symlink_to(tmp_path / "..data" / "backend.yaml")
    assert [b.name for b in load_directory(tmp_path, {}).backends] == ["mock"]


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_bytes(b"\xef\xbb\xbf" + BACKEND.replace("\n", "\r\n").encode())
    assert load_directory(tmp_path, {}).backends[0].name == "mock"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_bytes(BACKEND.encode() + b"# caf\xe9\n")
    assert load_errors(tmp_path) == [
        "b.yaml: ?/?: (resource): not UTF-8 text: invalid byte on line 8"
    ]


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigInvalid) as info:
        load_directory(missing, {})
    assert [str(e) for e in info.value.errors] == [
        f"{missing}: ?/?: (resource): config directory does not exist"
    ]


def test_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "b.yaml"
    file.write_text(BACKEND)
    with pytest.raises(ConfigInvalid) as info:
        load_directory(file, {})
    assert [str(e) for e in info.value.errors] == [
        f"{file}: ?/?: (resource): config directory is not a directory"
    ]


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no config here")
    with pytest.raises(ConfigInvalid) as info:
        load_directory(tmp_path, {})
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path}: ?/?: (resource): no *.yaml or *.yml files in directory"
    ]


def test_directory_without_resources(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing yet\n---\n---\n")
    with pytest.raises(ConfigInvalid) as info:
        load_directory(tmp_path, {})
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path}: ?/?: (resource): no resources in *.yaml or *.yml files"
    ]


def test_scalar_document(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BACKEND + "---\njust some text\n")
    assert load_errors(tmp_path) == [
        "b.yaml: ?/?: (resource): document at line 9: expected a mapping (a resource with "
        "apiVersion, kind, metadata and spec), got the text 'just some text'"
    ]


def test_yaml_merge_keys_are_not_duplicate_keys(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        BACKEND.replace("    - name: mock-gpt\n", "    - &m {name: mock-gpt, tier: basic}\n")
        + "    - <<: *m\n      name: mock-gpt-2\n"
    )
    models = load_directory(tmp_path, {}).backends[0].models
    assert [(m.name, m.tier) for m in models] == [("mock-gpt", "basic"), ("mock-gpt-2", "basic")]


# --- ${VAR} expansion -------------------------------------------------------------------------


def test_variables_are_expanded(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        BACKEND.replace("http://127.0.0.1:9000/v1", "${SCHEME}://${HOST}:${PORT}/v1").replace(
            "name: mock-gpt", "name: ${MODEL}"
        )
        + "  weight: ${WEIGHT}\n"
    )
    environ = {"SCHEME": "http", "HOST": "10.0.0.1", "PORT": "8000", "MODEL": "m", "WEIGHT": "2"}
    (backend,) = load_directory(tmp_path, environ).backends
    assert backend.base_url == "http://10.0.0.1:8000/v1"
    assert backend.models[0].name == "m"
    assert backend.weight == 2  # expanded before parsing, so YAML types apply


def test_dollar_dollar_brace_is_a_literal(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BACKEND.replace("name: mock-gpt", "name: $${NOT_A_VAR}$x"))
    assert load_directory(tmp_path, {}).backends[0].models[0].name == "${NOT_A_VAR}$x"


def test_whole_line_comments_are_not_expanded(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("# baseURL: ${UNSET}\n" + BACKEND + "  # ${ALSO_UNSET\n")
    assert load_directory(tmp_path, {}).backends[0].name == "mock"


def test_every_undefined_variable_is_reported(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        BACKEND.replace("http://127.0.0.1:9000/v1", "${A}://${B}").replace("mock-gpt", "${C}")
    )
    assert load_errors(tmp_path, {"B": "x"}) == [
        "b.yaml: ?/?: (resource): line 5: undefined environment variable ${A}",
        "b.yaml: ?/?: (resource): line 7: undefined environment variable ${C}",
    ]


def test_an_empty_value_is_defined(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(BACKEND.replace("http://127.0.0.1:9000/v1", "${URL}"))
    assert load_errors(tmp_path, {"URL": ""}) == [
        "b.yaml: Backend/mock: spec.baseURL: expected a URL (a string), got a null (empty) value"
    ]


# --- the watcher ------------------------------------------------------------------------------


class Watch:
    """Runs `source.watch()` in a task and queues what it yields."""

    def __init__(self, source: DirectorySource) -> None:
        self.queue: asyncio.Queue[ConfigSet | ConfigInvalid] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(source))

    async def _run(self, source: DirectorySource) -> None:
        async for result in source.watch():
            await self.queue.put(result)

    async def next(self, within: float = 1.0) -> ConfigSet | ConfigInvalid:
        return await asyncio.wait_for(self.queue.get(), within)

    async def config(self, within: float = 1.0) -> ConfigSet:
        result = await self.next(within)
        assert isinstance(result, ConfigSet), str(result)
        return result

    async def invalid(self, within: float = 1.0) -> ConfigInvalid:
        result = await self.next(within)
        assert isinstance(result, ConfigInvalid), result
        return result

    async def nothing(self, during: float) -> None:
        await asyncio.sleep(during)
        assert self.queue.empty(), self.queue.get_nowait()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "backends.yaml").write_text(BACKEND)
    (tmp_path / "endpoints.yaml").write_text(ENDPOINT)
    return tmp_path


@pytest.fixture
async def watch(config_dir: Path) -> AsyncIterator[Watch]:
    w = Watch(DirectorySource(config_dir, {}, interval=0.05))
    yield w
    await w.close()


def model_names(config: ConfigSet) -> list[str]:
    return [m.name for b in config.backends for m in b.models]


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DirectorySource(tmp_path, {}, interval=0)


async def test_edit_is_noticed_within_a_second_at_the_default_interval(config_dir: Path) -> None:
    w = Watch(DirectorySource(config_dir, {}))
    try:
        started = time.monotonic()
        first = await w.config(within=0.5)
        assert time.monotonic() - started < 0.5  # the first result comes at once
        assert first == load_directory(config_dir, {})
        await w.nothing(0.5)  # nothing changed: nothing yielded

        (config_dir / "backends.yaml").write_text(BACKEND + "    - name: mock-gpt-mini\n")
        edited = await w.config(within=1.0)
        assert model_names(edited) == ["mock-gpt", "mock-gpt-mini"]
    finally:
        await w.close()


async def test_invalid_edit_then_fix(watch: Watch, config_dir: Path) -> None:
    await watch.config()
    (config_dir / "backends.yaml").write_text(BACKEND.replace("mock-gpt", "mock gpt"))
    bad = await watch.invalid()
    assert [f"{e.file}: {e.path}" for e in bad.errors] == [
        f"{config_dir / 'backends.yaml'}: spec.models[0].name",
        f"{config_dir / 'endpoints.yaml'}: spec.models[0].targets[0].model",
    ]
    (config_dir / "backends.yaml").write_text(BACKEND)
    assert model_names(await watch.config()) == ["mock-gpt"]


async def test_rename_over_is_noticed(watch: Watch, config_dir: Path) -> None:
    """An editor's save: write a temp file, rename it over the original."""
    await watch.config()
    target = config_dir / "backends.yaml"
    new = BACKEND.replace(":9000/", ":9001/")  # the same size...
    assert len(new) == len(BACKEND)
    temp = config_dir / ".backends.yaml.swp"
    temp.write_text(new)
    before = target.stat()
    os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...and the same mtime
    os.replace(temp, target)
    assert (await watch.config()).backends[0].base_url == "http://127.0.0.1:9001/v1"


async def test_same_size_same_mtime_in_place_edit_is_noticed(
    watch: Watch, config_dir: Path
) -> None:
    """Two writes within one timestamp tick: size and mtime alone cannot tell them apart."""
    await watch.config()
    target = config_dir / "backends.yaml"
    before = target.stat()
    target.write_text(BACKEND.replace(":9000/", ":9002/"))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_ino == before.st_ino
    assert (await watch.config()).backends[0].base_url == "http://127.0.0.1:9002/v1"


async def test_identical_rewrite_and_touch_yield_nothing(watch: Watch, config_dir: Path) -> None:
    await watch.config()
    (config_dir / "backends.yaml").write_text(BACKEND)
    temp = config_dir / "endpoints.yaml.tmp"
    temp.write_text(ENDPOINT)
    os.replace(temp, config_dir / "endpoints.yaml")
    os.utime(config_dir / "backends.yaml")
    await watch.nothing(0.4)


async def test_additions_and_deletions(watch: Watch, config_dir: Path) -> None:
    await watch.config()
    (config_dir / "more.yml").write_text(ENDPOINT.replace("demo-chat", "two").replace("chat", "x"))
    assert [e.name for e in (await watch.config()).endpoints] == ["demo-chat", "two"]

    (config_dir / "endpoints.yaml").unlink()
    assert [e.name for e in (await watch.config()).endpoints] == ["two"]

    (config_dir / "more.yml").unlink()
    (config_dir / "backends.yaml").unlink()
    bad = await watch.invalid()
    assert [e.message for e in bad.errors] == ["no *.yaml or *.yml files in directory"]

    (config_dir / "backends.yaml").write_text(BACKEND)
    config = await watch.config()
    assert (len(config.backends), len(config.endpoints)) == (1, 0)


async def test_a_comment_only_edit_still_yields(watch: Watch, config_dir: Path) -> None:
    first = await watch.config()
    (config_dir / "backends.yaml").write_text("# a comment\n" + BACKEND)
    assert await watch.config() == first  # the consumer deduplicates


async def test_directory_appears_later(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    w = Watch(DirectorySource(directory, {"URL": "http://127.0.0.1:1/v1"}, interval=0.05))
    try:
        bad = await w.invalid()
        assert [e.message for e in bad.errors] == ["config directory does not exist"]
        await w.nothing(0.2)  # the same error is not repeated
        directory.mkdir()
        (directory / "b.yaml").write_text(BACKEND.replace("http://127.0.0.1:9000/v1", "${URL}"))
        assert (await w.config()).backends[0].base_url == "http://127.0.0.1:1/v1"
    finally:
        await w.close()


def test_a_file_nested_too_deeply_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("[" * 3000)
    with pytest.raises(ConfigInvalid) as raised:
        load_directory(tmp_path, {})
    assert "deep.yaml" in str(raised.value)
    assert "nested too deeply" in str(raised.value)
