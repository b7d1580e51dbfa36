"""discovery.py: paging through the job search, label rules, shard filtering, malformed items,
errors that cost a round and never more, and the stored membership that a restart re-watches
(with a real Store); plus the ``discovery`` settings block."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import huaweicloudsdkmodelarts.v1
import pytest
from structlog.testing import capture_logs

from monitor.config.loading import parse_settings
from monitor.config.settings import DiscoverySettings
from monitor.daemon.discovery import Discovery, search_all, search_body
from monitor.daemon.sharding import owns
from monitor.errors import ConfigError, InvalidResponse, ServerError, StateError
from monitor.store.database import Store

NOW = 1_800_000_000.0


def item(job_id: str, name: str | None = None) -> dict[str, Any]:
    return {"kind": "job", "metadata": {"id": job_id, "name": name or f"name-{job_id}"}}


class FakeSearch:
    """The search API over a list of items: pages by page index, like the real one."""

    def __init__(self, items: list[Any], *, total: bool = True) -> None:
        self.items = items
        self.total = total
        self.bodies: list[dict[str, Any]] = []
        self.fail: Exception | None = None
        self.fail_on_page: int | None = None

    async def __call__(self, body: dict[str, Any]) -> Any:
        self.bodies.append(body)
        if self.fail is not None and self.fail_on_page in (None, body["offset"]):
            raise self.fail
        limit, page = body["limit"], body["offset"]
        items = self.items[page * limit : (page + 1) * limit]
        answer: dict[str, Any] = {"count": len(items), "items": items}
        if self.total:
            answer["total"] = len(self.items)
        return answer


def settings(**kw: Any) -> DiscoverySettings:
    return DiscoverySettings.model_validate(kw)


# --- paging -----------------------------------------------------------------------------------


async def test_120_jobs_with_page_size_50_take_3_pages_then_stop() -> None:
    search = FakeSearch([item(f"job-{i}") for i in range(120)])
    result = await search_all(search, settings(page_size=50))
    assert [b["offset"] for b in search.bodies] == [0, 1, 2]
    assert list(result.jobs) == [f"job-{i}" for i in range(120)]
    assert (result.pages, result.errors, result.truncated) == (3, {}, [])


async def test_an_exactly_full_last_page_stops_at_total() -> None:
    search = FakeSearch([item(f"job-{i}") for i in range(100)])
    await search_all(search, settings(page_size=50))
    assert len(search.bodies) == 2


async def test_without_a_total_paging_stops_at_the_first_short_page() -> None:
    search = FakeSearch([item(f"job-{i}") for i in range(100)], total=False)
    result = await search_all(search, settings(page_size=50))
    assert len(search.bodies) == 3  # the third page is empty
    assert len(result.jobs) == 100


async def test_a_server_that_always_answers_full_pages_is_bounded() -> None:
    async def endless(body: dict[str, Any]) -> Any:
        page = body["offset"]
        return {"total": 10**9, "items": [item(f"p{page}-{i}") for i in range(body["limit"])]}

    result = await search_all(endless, settings(page_size=2), max_pages=7)
    assert (result.pages, result.truncated, len(result.jobs)) == (7, ["0"], 14)


def test_the_request_body_is_the_sdks_every_filter_value_an_array_of_strings() -> None:
    """A lone ``like`` text is sent as an array of one and ``between`` numbers as strings, as
    the SDK's ``Filter.value: list[str]`` sends them; the workspace is named in every body."""
    s = settings(
        page_size=20,
        filters=[
            {"key": "name", "operator": "like", "value": "llm-"},
            {"key": "create_time", "operator": "between", "value": ["1000", 2000]},
        ],
    )
    assert search_body(s, "ws-b", 3) == {
        "workspace_id": "ws-b",
        "offset": 3,
        "limit": 20,
        "sort_by": "create_time",
        "order": "asc",
        "filters": [
            {"key": "name", "operator": "like", "value": ["llm-"]},
            {"key": "create_time", "operator": "between", "value": ["1000", "2000"]},
        ],
    }


def test_tag_conditions_are_sent_as_the_apis_tags_field_and_only_when_given() -> None:
    s = settings(tags=[{"key": "team", "values": ["llm", "cv"]}, {"key": "owner"}])
    assert search_body(s, "0", 0)["tags"] == [
        {"key": "team", "values": ["llm", "cv"]},
        {"key": "owner", "values": []},
    ]
    assert "tags" not in search_body(settings(), "0", 0)


def test_the_default_filter_finds_jobs_that_are_not_finished() -> None:
    assert search_body(settings(), "0", 0)["filters"] == [
        {"key": "phase", "operator": "in", "value": ["Creating", "Pending", "Running"]}
    ]


ORACLE_SETTINGS = [
    pytest.param({}, id="defaults"),
    pytest.param(
        {
            "workspaces": ["0", "8f4e2c1a9b7d4e6f8a0b1c2d3e4f5a6b"],
            "page_size": 7,
            "filters": [
                {"key": "name", "operator": "like", "value": "bert"},
                {"key": "create_time", "operator": "between", "value": [1764300000000, 1.7649e12]},
                {"key": "phase", "operator": "not", "value": "Failed"},
                {"key": "user_id", "operator": "in", "value": [42, "u-7"]},
            ],
            "tags": [{"key": "team", "values": ["llm"]}, {"key": "cost center"}],
        },
        id="every-kind-of-value",
    ),
]


def sdk_types_problems(value: Any, declared: str, where: str) -> list[str]:
    """Where ``value`` is not of the SDK's declared ``openapi_types`` type (the SDK's models
    store whatever they are given, so its serialization alone would not notice a number)."""
    if declared.startswith("list[") and declared.endswith("]"):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            p
            for i, v in enumerate(value)
            for p in sdk_types_problems(v, declared[5:-1], f"{where}[{i}]")
        ]
    primitive = {"str": str, "int": int}.get(declared)
    if primitive is not None:
        ok = isinstance(value, primitive) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not {declared}"]
    model = getattr(huaweicloudsdkmodelarts.v1, declared)
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not a {declared} object"]
    unknown = sorted(set(value) - set(model.attribute_map.values()))
    problems = [f"{where}: {declared} has no field {name!r}" for name in unknown]
    for attr, json_key in model.attribute_map.items():
        if json_key in value:
            problems += sdk_types_problems(
                value[json_key], model.openapi_types[attr], f"{where}.{json_key}"
            )
    return problems


def through_the_sdk(body: dict[str, Any]) -> Any:
    """``body`` built with the SDK's request models and serialized back (``to_dict``, without
    the fields left unset): a field the models do not have raises ``TypeError``."""
    models = huaweicloudsdkmodelarts.v1
    built = models.JobSearches(
        **{
            **body,
            "filters": [models.Filter(**f) for f in body["filters"]],
            **(
                {"tags": [models.ListTagFilter(**t) for t in body["tags"]]}
                if "tags" in body
                else {}
            ),
        }
    )
    return without_none(built.to_dict())


def without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


@pytest.mark.parametrize("block", ORACLE_SETTINGS)
async def test_every_body_sent_is_what_the_sdks_request_models_build(block: dict[str, Any]) -> None:
    """The official SDK as the oracle, both ways: every field and value of every body a round
    sends is one ``JobSearches``/``Filter``/``ListTagFilter`` declares, of its declared type,
    and the SDK's serialization of the same search is exactly our body."""
    search = FakeSearch([item(f"job-{i}") for i in range(10)])
    await search_all(search, settings(**block))
    assert search.bodies
    for body in search.bodies:
        assert sdk_types_problems(body, "JobSearches", "$") == []
        assert through_the_sdk(body) == body


class WorkspaceSearch:
    """The search API over several workspaces: a body searches the one it names (absent:
    "0", as the API does), paged by page index."""

    def __init__(self, workspaces: dict[str, list[Any]]) -> None:
        self.workspaces = workspaces
        self.bodies: list[dict[str, Any]] = []
        self.fail: dict[str, Exception] = {}

    async def __call__(self, body: dict[str, Any]) -> Any:
        self.bodies.append(body)
        workspace = body.get("workspace_id", "0")
        if workspace in self.fail:
            raise self.fail[workspace]
        items = self.workspaces.get(workspace, [])
        limit, page = body["limit"], body["offset"]
        return {"total": len(items), "items": items[page * limit : (page + 1) * limit]}


async def test_every_configured_workspace_is_searched_each_with_its_own_pages() -> None:
    search = WorkspaceSearch(
        {
            "0": [item(f"default-{i}") for i in range(3)],
            "ws-a": [item(f"a-{i}") for i in range(5)],
            "ws-b": [item("b-0")],
        }
    )
    result = await search_all(search, settings(workspaces=["0", "ws-a"], page_size=2))
    assert [(b["workspace_id"], b["offset"]) for b in search.bodies] == [
        ("0", 0),
        ("0", 1),
        ("ws-a", 0),
        ("ws-a", 1),
        ("ws-a", 2),
    ]
    assert sorted(result.jobs) == sorted(
        [f"default-{i}" for i in range(3)] + [f"a-{i}" for i in range(5)]
    )
    assert result.pages == 5


async def test_a_failing_workspace_costs_only_its_own_jobs() -> None:
    search = WorkspaceSearch({"0": [item("a")], "ws-b": [item("b")]})
    search.fail["0"] = ServerError("server error: boom", status=503)
    result = await search_all(search, settings(workspaces=["0", "ws-b"]))
    assert list(result.jobs) == ["b"]
    assert list(result.errors) == ["0"]


async def test_malformed_items_are_skipped_and_the_rest_kept() -> None:
    items = [
        item("good-1"),
        "not an object",
        {"metadata": "nope"},
        {"metadata": {"name": "no-id"}},
        {"metadata": {"id": 42, "name": "numeric"}},
        {"metadata": {"id": "../../etc", "name": "path"}},
        {"metadata": {"id": "no-name"}},
        item("good-2"),
    ]
    result = await search_all(FakeSearch(items), settings())
    assert list(result.jobs) == ["good-1", "good-2"]
    assert len(result.skipped) == 6


async def test_an_item_id_valid_but_for_a_trailing_newline_is_skipped() -> None:
    """The id rule is ``jobs[].id``'s, matched whole: ``$`` alone would let the newline through
    and break the URL of every poll of that job."""
    result = await search_all(FakeSearch([item("abc\n"), item("abc")]), settings())

    assert list(result.jobs) == ["abc"]
    assert result.skipped == ["item with metadata.id 'abc\\n': not a job id"]


async def test_an_error_mid_way_keeps_the_pages_read_before() -> None:
    search = FakeSearch([item(f"job-{i}") for i in range(120)])
    search.fail, search.fail_on_page = ServerError("server error: boom", status=503), 1
    result = await search_all(search, settings(page_size=50))
    assert isinstance(result.errors["0"], ServerError)
    assert (result.pages, len(result.jobs)) == (1, 50)


@pytest.mark.parametrize("answer", [None, [], {"total": 3}, {"items": "x"}])
async def test_an_answer_of_the_wrong_shape_is_an_invalid_response(answer: Any) -> None:
    async def odd(body: dict[str, Any]) -> Any:
        return answer

    result = await search_all(odd, settings())
    assert isinstance(result.errors["0"], InvalidResponse)


# --- Discovery with a real store --------------------------------------------------------------


class Watcher:
    """The poller's side: ``watch`` records calls; jobs in ``retired`` are refused."""

    def __init__(self) -> None:
        self.watched: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        self.retired: set[str] = set()

    def watch(self, job_id: str, labels: Mapping[str, str]) -> bool:
        self.calls.append(job_id)
        if job_id in self.retired:
            self.watched.pop(job_id, None)
            return False
        self.watched[job_id] = dict(labels)
        return True

    def watching(self, job_id: str) -> bool:
        return job_id in self.watched


def discovery(
    store: Store,
    search: FakeSearch | WorkspaceSearch,
    watcher: Watcher,
    *,
    configured: set[str] | None = None,
    shard: tuple[int, int] = (0, 1),
    **kw: Any,
) -> Discovery:
    return Discovery(
        settings(**kw),
        search=search,
        store=store,
        watch=watcher.watch,
        watching=watcher.watching,
        owns=lambda job_id: owns(job_id, *shard),
        configured=lambda: configured or set(),
        clock=lambda: NOW,
    )


RULES = [
    {"name_regex": "^llm-", "labels": {"team": "llm", "tier": "gold"}},
    {"name_regex": "-eval$", "labels": {"stage": "eval", "tier": "bronze"}},
]


async def test_found_jobs_are_watched_with_the_labels_of_every_matching_rule(store: Store) -> None:
    search = FakeSearch([item("a", "llm-pretrain"), item("b", "llm-sft-eval"), item("c", "resnet")])
    watcher = Watcher()
    await discovery(store, search, watcher, labels=RULES).run_once()
    assert watcher.watched == {
        "a": {"team": "llm", "tier": "gold"},
        "b": {"team": "llm", "tier": "bronze", "stage": "eval"},  # later rules win
        "c": {},
    }
    assert store.load_discovered() == watcher.watched


async def test_a_second_round_does_not_watch_known_jobs_again(store: Store) -> None:
    search, watcher = FakeSearch([item("a"), item("b")]), Watcher()
    d = discovery(store, search, watcher)
    await d.run_once()
    await d.run_once()
    assert watcher.calls == ["a", "b"]


async def test_changed_label_rules_relabel_found_jobs(store: Store) -> None:
    search, watcher = FakeSearch([item("a", "llm-x")]), Watcher()
    d = discovery(store, search, watcher)
    await d.run_once()
    d.configure(settings(labels=RULES[:1]))
    await d.run_once()
    assert watcher.watched["a"] == {"team": "llm", "tier": "gold"}
    assert store.load_discovered()["a"] == {"team": "llm", "tier": "gold"}


async def test_configured_jobs_are_never_touched_by_discovery(store: Store) -> None:
    search, watcher = FakeSearch([item("a", "llm-x"), item("cfg", "llm-y")]), Watcher()
    await discovery(store, search, watcher, configured={"cfg"}, labels=RULES).run_once()
    assert list(watcher.watched) == ["a"]
    assert "cfg" not in store.load_discovered()


async def test_each_shard_keeps_only_the_jobs_it_owns(tmp_path: Path) -> None:
    items = [item(f"job-{i}") for i in range(60)]
    kept: list[set[str]] = []
    for index in range(3):
        s = Store(tmp_path / f"shard-{index}.db")
        watcher = Watcher()
        await discovery(s, FakeSearch(items), watcher, shard=(index, 3)).run_once()
        assert all(owns(j, index, 3) for j in watcher.watched)
        assert set(s.load_discovered()) == set(watcher.watched)
        kept.append(set(watcher.watched))
        s.close()
    assert set().union(*kept) == {f"job-{i}" for i in range(60)}
    assert sum(len(k) for k in kept) == 60
    assert all(kept)


async def test_jobs_that_leave_the_search_are_not_dropped(store: Store) -> None:
    search, watcher = FakeSearch([item("a"), item("b")]), Watcher()
    d = discovery(store, search, watcher)
    await d.run_once()
    search.items = [item("b")]
    await d.run_once()
    assert set(watcher.watched) == {"a", "b"}
    assert set(store.load_discovered()) == {"a", "b"}


async def test_a_job_retired_by_its_lifecycle_is_forgotten(store: Store) -> None:
    search, watcher = FakeSearch([item("a"), item("b")]), Watcher()
    d = discovery(store, search, watcher)
    await d.run_once()
    watcher.retired.add("a")
    del watcher.watched["a"]  # the poller retired it (terminal_retention)
    search.items = []
    await d.run_once()
    assert set(store.load_discovered()) == {"b"}
    assert set(d.members) == {"b"}


async def test_a_job_gone_past_its_retention_is_unwatched_and_forgotten(store: Store) -> None:
    search, watcher = FakeSearch([item("a"), item("b")]), Watcher()
    expired: set[str] = set()
    unwatched: list[str] = []
    d = Discovery(
        settings(),
        search=search,
        store=store,
        watch=watcher.watch,
        watching=watcher.watching,
        owns=lambda job_id: True,
        configured=set,
        expired=expired.__contains__,
        unwatch=unwatched.append,
    )
    await d.run_once()
    search.items = []  # deleted: the search no longer finds it
    expired.add("a")  # the API has said "gone" for longer than not_found_retention
    await d.run_once()
    assert unwatched == ["a"]
    assert set(store.load_discovered()) == set(d.members) == {"b"}

    search.items = [item("b")]
    expired.add("b")  # gone for long, but the search finds it again: it is back
    await d.run_once()
    assert unwatched == ["a"]
    assert "b" in d.members


async def test_a_restart_watches_stored_jobs_that_left_the_search(db_path: Path) -> None:
    first = Store(db_path)
    await discovery(
        first, FakeSearch([item("a", "llm-a"), item("b")]), Watcher(), labels=RULES
    ).run_once()
    first.close()

    second = Store(db_path)
    try:
        watcher = Watcher()
        watcher.retired.add("b")  # finished past its retention while the monitor was down
        search = FakeSearch([])  # neither matches the search any more
        d = discovery(second, search, watcher, labels=RULES)
        await d.restore(await second.call(second.load_discovered))
        assert watcher.watched == {"a": {"team": "llm", "tier": "gold"}}
        assert second.load_discovered() == {"a": {"team": "llm", "tier": "gold"}}
        assert search.bodies == []  # restoring needs no search
    finally:
        second.close()


async def test_a_restart_forgets_stored_jobs_another_shard_owns_now(store: Store) -> None:
    ids = [f"job-{i}" for i in range(20)]
    store.add_discovered({j: {} for j in ids}, NOW)
    watcher = Watcher()
    d = discovery(store, FakeSearch([]), watcher, shard=(1, 2))
    await d.restore(store.load_discovered())
    mine = {j for j in ids if owns(j, 1, 2)}
    assert set(watcher.watched) == mine == set(store.load_discovered())


async def test_reconcile_rewatches_a_member_dropped_from_the_config(store: Store) -> None:
    search, watcher = FakeSearch([item("a")]), Watcher()
    d = discovery(store, search, watcher)
    await d.run_once()
    del watcher.watched["a"]  # e.g. a reload removed it from jobs[] and unwatched it
    await d.reconcile()
    assert "a" in watcher.watched


# --- failures ---------------------------------------------------------------------------------


async def test_api_errors_cost_a_round_and_are_logged_once(store: Store) -> None:
    search, watcher = FakeSearch([item("a")]), Watcher()
    d = discovery(store, search, watcher)
    with capture_logs() as logs:
        search.fail = ServerError("server error: down", status=503, request_id="r1")
        await d.run_once()
        search.fail = ServerError("server error: down", status=503, request_id="r2")
        await d.run_once()
        search.fail = None
        await d.run_once()
        await d.run_once()
    events = [e["event"] for e in logs if e["event"].startswith("discovery_")]
    assert events == ["discovery_failed", "discovery_recovered"]
    assert watcher.watched == {"a": {}}


async def test_a_failing_workspace_is_logged_once_by_name_and_the_others_jobs_watched(
    store: Store,
) -> None:
    search, watcher = WorkspaceSearch({"0": [item("a")], "ws-b": [item("b")]}), Watcher()
    d = discovery(store, search, watcher, workspaces=["0", "ws-b"])
    search.fail["ws-b"] = ServerError("server error: down", status=503)
    with capture_logs() as logs:
        await d.run_once()
        await d.run_once()
        del search.fail["ws-b"]
        await d.run_once()
    events = [(e["event"], e["workspace"]) for e in logs if e["event"].startswith("discovery_")]
    assert events == [("discovery_failed", "ws-b"), ("discovery_recovered", "ws-b")]
    assert watcher.watched == {"a": {}, "b": {}}


async def test_malformed_items_are_logged_once(store: Store) -> None:
    search = FakeSearch([item("a"), {"metadata": {"id": "b"}}])
    d = discovery(store, search, Watcher())
    with capture_logs() as logs:
        await d.run_once()
        await d.run_once()
    skipped = [e for e in logs if e["event"] == "discovery_item_skipped"]
    assert len(skipped) == 1
    assert "metadata.name" in skipped[0]["problem"]


async def test_a_store_failure_still_watches_and_retries_storing(store: Store) -> None:
    search, watcher = FakeSearch([item("a")]), Watcher()
    d = discovery(store, search, watcher)
    real = store.add_discovered

    def broken(*args: Any) -> None:
        raise StateError("disk full")

    store.add_discovered = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        await d.run_once()
    assert "a" in watcher.watched
    assert any(e["event"] == "discovery_store_failed" for e in logs)
    store.add_discovered = real  # type: ignore[method-assign]
    await d.run_once()
    assert store.load_discovered() == {"a": {}}


async def test_the_loop_survives_a_crash_and_a_reconfigure_wakes_it(store: Store) -> None:
    calls = 0

    async def flaky(body: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return {"total": 1, "items": [item("a")]}

    watcher = Watcher()
    d = Discovery(
        settings(interval="50ms"),
        search=flaky,
        store=store,
        watch=watcher.watch,
        watching=watcher.watching,
        owns=lambda job_id: True,
        configured=set,
    )
    with capture_logs() as logs:
        task = asyncio.create_task(d.run())
        try:
            for _ in range(200):
                if d.rounds >= 2:
                    break
                await asyncio.sleep(0.01)
            assert d.rounds >= 2
            assert "a" in watcher.watched
            d.configure(settings(interval="1h"))
            await asyncio.sleep(0.05)
            rounds = d.rounds
            d.configure(settings(interval="1h"))  # wakes the loop at once
            for _ in range(100):
                if d.rounds > rounds:
                    break
                await asyncio.sleep(0.01)
            assert d.rounds == rounds + 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert any(e["event"] == "discovery_crashed" for e in logs)


# --- the settings block -----------------------------------------------------------------------


def base(**extra: Any) -> dict[str, Any]:
    return {
        "api": {"endpoint": "http://127.0.0.1:1", "project_id": "p"},
        "auth": {"type": "none"},
        **extra,
    }


def test_no_block_means_no_discovery_and_an_empty_block_the_defaults() -> None:
    assert parse_settings(base(), env={}).discovery is None
    d = parse_settings(base(discovery={}), env={}).discovery
    assert d is not None
    assert (d.interval, d.page_size, d.labels) == (300.0, 50, [])


def test_a_single_value_of_in_is_a_list_of_one() -> None:
    d = parse_settings(
        base(discovery={"filters": [{"key": "phase", "operator": "in", "value": "Running"}]}),
        env={},
    ).discovery
    assert d is not None
    assert d.filters[0].value == ["Running"]


def test_filter_values_are_read_as_the_arrays_of_strings_the_api_takes() -> None:
    d = parse_settings(
        base(
            discovery={
                "filters": [
                    {"key": "name", "operator": "like", "value": "bert"},
                    {
                        "key": "create_time",
                        "operator": "between",
                        "value": [1764300000000, 1.7649e12],
                    },
                    {"key": "user_id", "operator": "in", "value": [7, "u-8"]},
                ]
            }
        ),
        env={},
    ).discovery
    assert d is not None
    assert [f.value for f in d.filters] == [
        ["bert"],
        ["1764300000000", "1764900000000"],
        ["7", "u-8"],
    ]


def test_the_default_workspace_is_searched_unless_workspaces_are_given() -> None:
    d = parse_settings(base(discovery={}), env={}).discovery
    assert d is not None and d.workspaces == ["0"]
    d = parse_settings(base(discovery={"workspaces": ["0", "ws-a"]}), env={}).discovery
    assert d is not None and d.workspaces == ["0", "ws-a"]


def test_a_tag_search_within_31_days_of_create_time_is_taken() -> None:
    window = {"key": "create_time", "operator": "between", "value": [0, 31 * 86_400_000]}
    d = parse_settings(
        base(discovery={"filters": [window], "tags": [{"key": "team", "values": ["llm"]}]}),
        env={},
    ).discovery
    assert d is not None and [t.key for t in d.tags] == ["team"]
    without_window = parse_settings(base(discovery={"tags": [{"key": "team"}]}), env={})
    assert without_window.discovery is not None  # the API searches the last 31 days


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"interval": "soon"}, "discovery.interval"),
        ({"page_size": 0}, "discovery.page_size"),
        ({"page_size": 51}, "discovery.page_size"),
        (
            {"filters": [{"key": "owner", "operator": "in", "value": ["x"]}]},
            "discovery.filters[0].key",
        ),
        (
            {"filters": [{"key": "name", "operator": "eq", "value": "x"}]},
            "discovery.filters[0].operator",
        ),
        (
            {"filters": [{"key": "name", "operator": "like", "value": ""}]},
            "discovery.filters[0].value",
        ),
        (
            {"filters": [{"key": "phase", "operator": "not", "value": []}]},
            "discovery.filters[0].value",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": [2, 1]}]},
            "discovery.filters[0].value",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": ["x", 1]}]},
            "discovery.filters[0].value",
        ),
        ({"filters": [{"key": "name", "operator": "like"}]}, "discovery.filters[0].value"),
        (
            {"filters": [{"key": "name", "operator": "like", "value": ["a", "b"]}]},
            "discovery.filters[0].value",
        ),
        (
            {"filters": [{"key": "phase", "operator": "in", "value": [True]}]},
            "discovery.filters[0].value",
        ),
        (
            {"filters": [{"key": "create_time", "operator": "between", "value": ["1e3", "2e3"]}]},
            "discovery.filters[0].value",
        ),
        ({"workspaces": []}, "discovery.workspaces"),
        ({"workspaces": ["0", ""]}, "discovery.workspaces"),
        ({"workspaces": ["ws-a", "0", "ws-a"]}, "discovery.workspaces"),
        ({"workspaces": "0"}, "discovery.workspaces"),
        ({"tags": [{"key": " team"}]}, "discovery.tags[0].key"),
        ({"tags": [{"key": "t" * 129}]}, "discovery.tags[0].key"),
        ({"tags": [{"key": "team", "values": ["a", "a"]}]}, "discovery.tags[0].values"),
        ({"tags": [{"key": "team", "values": ["a|b"]}]}, "discovery.tags[0].values"),
        ({"tags": [{"key": "team"}, {"key": "team"}]}, "discovery.tags"),
        ({"tags": [{"key": f"k{i}"} for i in range(11)]}, "discovery.tags"),
        (
            {
                "tags": [{"key": "team"}],
                "filters": [
                    {"key": "create_time", "operator": "between", "value": [0, 31 * 86_400_000 + 1]}
                ],
            },
            "discovery.tags",
        ),
        (
            {
                "tags": [{"key": "team"}],
                "filters": [{"key": "create_time", "operator": "in", "value": ["0"]}],
            },
            "discovery.tags",
        ),
        ({"labels": [{"name_regex": "(", "labels": {}}]}, "discovery.labels[0].name_regex"),
        (
            {"labels": [{"name_regex": "x", "labels": {"job_id": "y"}}]},
            "discovery.labels[0].labels",
        ),
        (
            {"labels": [{"name_regex": "x", "labels": {"9lives": "y"}}]},
            "discovery.labels[0].labels",
        ),
        ({"labels": [{"regex": "x"}]}, "discovery.labels[0].regex"),
        ({"intervall": "1m"}, "discovery.intervall"),
    ],
)
def test_bad_discovery_settings_name_the_key(block: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(base(discovery=block), env={})
    assert any(p.startswith(f"{key}: ") for p in info.value.problems), info.value.problems


async def test_a_found_name_is_bounded_before_the_label_rules_see_it(store: Store) -> None:
    """A 5 MB name from the search is cut to the API's 64 characters (and a control character
    becomes U+FFFD) before any regex runs over it: a rule anchored at the end no longer matches
    what was cut."""
    search = FakeSearch([item("a", "llm-" + "x" * 5_000_000 + "-eval"), item("b", "llm-\x00-eval")])
    result = await discovery(store, search, Watcher(), labels=RULES).run_once()
    assert len(result.jobs["a"]) == 64 and result.jobs["a"].endswith("…")
    assert result.jobs["b"] == "llm-\ufffd-eval"
    assert store.load_discovered()["a"] == {"team": "llm", "tier": "gold"}
