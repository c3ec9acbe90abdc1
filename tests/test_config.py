import logging
from pathlib import Path

import pytest

from router.config import ConfigError, load_settings, settings_from_mapping

BASE = {
    "cheap": {"model": "openai/gpt-4o-mini"},
    "proposers": [
        {"model": "anthropic/claude-sonnet-4-5"},
        {"model": "gemini/gemini-2.5-pro"},
        {"model": "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"},
    ],
    "aggregator": {"model": "openai/gpt-4o"},
}


def test_design_example_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with caplog.at_level(logging.WARNING):
        settings = load_settings(path)
    assert settings.cheap.model == "openai/gpt-4o-mini"
    assert len(settings.proposers) == 3
    assert settings.judge_entry == settings.aggregator
    assert "one model family" not in caplog.text


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"cheap": {"model": "gpt-4o-mini"}}, "cheap"),
        ({"cheap": {"model": "openai/x", "timeout_s": -1}}, "cheap.timeout_s"),
        ({"mixture": {"quorum": 5}}, "quorum"),
        ({"mixture": {"layerz": 2}}, "mixture.layerz"),
        ({"cheap": {"model": "openai/x", "input_cost_per_token": 1e-6}}, "cheap"),
        ({"proposers": []}, "proposers"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({**BASE, **change})
    assert named in str(info.value)


def test_warns_when_proposers_are_one_family(caplog: pytest.LogCaptureFixture) -> None:
    same = {**BASE, "proposers": [{"model": "openai/gpt-4o"}, {"model": "openai/gpt-4o-2024-08-06"}]}
    with caplog.at_level(logging.WARNING):
        settings_from_mapping(same)
    assert "one model family" in caplog.text


@pytest.mark.parametrize(
    ("mixture", "timeout", "warned"),
    [
        ({}, 120.0, None),
        ({"layers": 3, "proposer_deadline_s": 29.0}, 120.0, None),  # 3 x 29 + 29 for the aggregator fits
        ({"layers": 3, "proposer_deadline_s": 30.0}, 120.0, "cut short or skipped"),  # not with the margin
        ({"layers": 4, "proposer_deadline_s": 30.0}, 120.0, "cut short or skipped"),
        ({"proposer_deadline_s": 5.0}, 5.0, "no time to aggregate"),
        ({"proposer_deadline_s": 119.9}, 120.0, "no time to aggregate"),
    ],
)
def test_warns_when_the_mixture_deadlines_do_not_fit_the_request_timeout(
    caplog: pytest.LogCaptureFixture, mixture: dict[str, float], timeout: float, warned: str | None
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = settings_from_mapping({**BASE, "mixture": mixture, "limits": {"request_timeout_s": timeout}})
    assert settings.deadline_warning() == (None if warned is None else caplog.records[-1].getMessage())
    if warned is not None:
        assert warned in caplog.text


def test_missing_or_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cheap: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", "/tmp/x")
    settings = settings_from_mapping(BASE)
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert str(settings.data_dir) == "/tmp/x"


def test_tenant_limits_replace_the_defaults_field_by_field() -> None:
    from router.ratelimit import Limits, limits_by_tenant

    auth = {
        "requests_per_minute": 60,
        "tokens_per_minute": 1000,
        "tenant_limits": [{"tenant": "big", "requests_per_minute": 600}],
    }
    default, own = limits_by_tenant(settings_from_mapping({**BASE, "auth": auth}).auth)
    assert own["big"] == Limits(requests_per_minute=600, tokens_per_minute=1000)  # the unset field is inherited
    assert default == Limits(60, 1000)
    with pytest.raises(ConfigError, match="tenant_limits"):  # no exemption: 0 is not "unlimited"
        settings_from_mapping({**BASE, "auth": {**auth, "tenant_limits": [{"tenant": "x", "tokens_per_minute": 0}]}})


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    # Callers catch ConfigError only (export, train --from-log, promotion announcements): a bare
    # UnicodeDecodeError was a traceback there.
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("cheap: {model: openai/café}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8 text .* at byte 25"):
        load_settings(latin1)


def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "twice.yaml"
    # YAML keeps the last silently: the first cache section would be dropped without a word.
    path.write_text(
        yaml.safe_dump(BASE) + "cache: {ttl_s: 60}\nledger: {store_prompts: true}\ncache: {enabled: false}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "twice.yaml" in message and "'cache'" in message and "twice" in message
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump(BASE) + "mixture:\n  layers: 2\n  quorum: 2\n  layers: 3\n")
    with pytest.raises(ConfigError, match="'layers' is given twice"):
        load_settings(nested)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "cheap: &entry {model: openai/gpt-4o-mini, timeout_s: 30}\n"
        "proposers: [{model: anthropic/claude-sonnet-4-5}, {model: gemini/gemini-2.5-pro}]\n"
        "aggregator: {<<: *entry, model: openai/gpt-4o}\n"
    )
    settings = load_settings(path)
    assert settings.aggregator.model == "openai/gpt-4o" and settings.aggregator.timeout_s == 30


def test_the_upstream_pool_cap_is_a_setting_of_512_by_default() -> None:
    assert settings_from_mapping(BASE).limits.max_upstream_in_flight == 512
    assert settings_from_mapping({**BASE, "limits": {"max_upstream_in_flight": 64}}).limits.max_upstream_in_flight == 64


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (0, "greater than or equal to 1"),
        (-1, "greater than or equal to 1"),
        (True, "valid integer"),  # not taken for 1
        (1.5, "valid integer"),
        ("64", "valid integer"),  # a quoted number is a mistake in the file
        (None, "valid integer"),
    ],
    ids=repr,
)
def test_an_upstream_pool_cap_that_is_not_a_positive_integer_is_a_config_error_naming_it(
    value: object, said: str
) -> None:
    with pytest.raises(ConfigError, match=rf"limits\.max_upstream_in_flight: .*{said}"):
        settings_from_mapping({**BASE, "limits": {"max_upstream_in_flight": value}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("policy", "difficulty", float("nan")),  # was refused as "less than or equal to 1", which it is not about
        ("budget", "mixture_daily_usd", float("inf")),
        ("budget", "sync_interval_s", float("inf")),  # the replicas would never share their spend
        ("mixture", "proposer_deadline_s", float("inf")),
        ("limits", "request_timeout_s", float("inf")),
        ("cache", "timeout_ms", float("inf")),  # a Redis that hangs would hang every request
        ("ledger", "feedback_weight", float("inf")),  # an infinite sample weight breaks training
        ("shadow", "daily_budget_usd", float("nan")),
        ("resilience", "backoff_max_s", float("inf")),
    ],
)
def test_nan_and_infinity_are_config_errors_naming_the_key(section: str, key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: Input should be a finite number"):
        settings_from_mapping({**BASE, section: {key: value}})


def test_an_infinite_model_price_or_timeout_in_a_yaml_file_is_a_config_error(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "inf.yaml"
    path.write_text(
        yaml.safe_dump(BASE)
        + "judge: {model: openai/judge, timeout_s: .inf, input_cost_per_token: .inf, output_cost_per_token: 1.0e-6}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "judge.timeout_s: Input should be a finite number" in message
    assert "judge.input_cost_per_token: Input should be a finite number" in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("policy", "difficulty", True),  # YAML's `true` (or `yes`) was taken as 1.0: never escalate by difficulty
        ("policy", "stakes", "0.4"),  # a quoted number is a mistake in the file
        ("policy", "stakes_min_difficulty", False),
        ("mixture", "quorum", True),  # was a quorum of 1
        ("mixture", "layers", 2.0),
        ("mixture", "proposer_deadline_s", "30"),
        ("budget", "mixture_daily_usd", True),  # was a cap of $1
        ("budget", "mixture_monthly_usd_per_tenant", "100"),
    ],
    ids=repr,
)
def test_a_routing_number_given_as_a_boolean_or_a_string_is_a_config_error(
    section: str, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: Input should be a valid (number|integer)"):
        settings_from_mapping({**BASE, section: {key: value}})


def test_whole_numbers_are_still_accepted_where_a_fraction_may_be_given() -> None:
    settings = settings_from_mapping(
        {**BASE, "policy": {"difficulty": 1, "stakes": 0}, "budget": {"mixture_daily_usd": 50}}
    )
    assert settings.policy.difficulty == 1.0 and settings.policy.stakes == 0.0
    assert settings.budget.mixture_daily_usd == 50.0


def test_warns_when_a_proposer_is_listed_twice(caplog: pytest.LogCaptureFixture) -> None:
    twice = {**BASE, "proposers": [*BASE["proposers"], {"model": "gemini/gemini-2.5-pro"}]}  # type: ignore[misc]
    with caplog.at_level(logging.WARNING):
        settings = settings_from_mapping(twice)
    warning = settings.duplicate_proposers_warning()
    assert warning is not None and warning in caplog.text
    assert "gemini/gemini-2.5-pro" in warning and "2 times" in warning and "quorum" in warning
    # The same model behind two deployments (another api_base) is not a repeat.
    two_bases = [
        {"model": "openai/llama-3-70b", "api_base": "http://a:8000/v1"},
        {"model": "openai/llama-3-70b", "api_base": "http://b:8000/v1"},
        {"model": "gemini/gemini-2.5-pro"},
    ]
    assert settings_from_mapping({**BASE, "proposers": two_bases}).duplicate_proposers_warning() is None
    assert settings_from_mapping(BASE).duplicate_proposers_warning() is None


def test_unset_api_key_variables_are_named_before_the_service_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the check the service started, and every call to such a model failed upstream (a 502 "failed
    # (auth)") from the first request on.
    monkeypatch.delenv("MOA_TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv("MOA_TEST_EMPTY_KEY", "")
    monkeypatch.setenv("MOA_TEST_SET_KEY", "sk-test")
    settings = settings_from_mapping(
        {
            **BASE,
            "cheap": {"model": "openai/gpt-4o-mini", "api_key_env": "MOA_TEST_SET_KEY"},
            "proposers": [
                {"model": "anthropic/claude-sonnet-4-5", "api_key_env": "MOA_TEST_UNSET_KEY"},
                {"model": "gemini/gemini-2.5-pro"},
            ],
            "aggregator": {
                "model": "openai/gpt-4o",
                "api_key_env": "MOA_TEST_SET_KEY",
                "fallback": {"model": "openai/gpt-4o-mini", "api_key_env": "MOA_TEST_EMPTY_KEY"},
            },
        }
    )
    with pytest.raises(ConfigError) as info:
        settings.check_api_keys()
    message = str(info.value)
    assert "proposers.0.api_key_env: $MOA_TEST_UNSET_KEY is not set" in message
    assert "aggregator.fallback.api_key_env: $MOA_TEST_EMPTY_KEY is not set or is empty" in message
    assert "MOA_TEST_SET_KEY" not in message and "sk-test" not in message
    monkeypatch.setenv("MOA_TEST_UNSET_KEY", "sk-1")
    monkeypatch.setenv("MOA_TEST_EMPTY_KEY", "sk-2")
    settings.check_api_keys()  # every key is there


@pytest.mark.parametrize("model", ["/gpt-4o", "openai/", "ab/"], ids=repr)
def test_a_model_without_its_provider_or_its_name_is_a_config_error(model: str) -> None:
    with pytest.raises(ConfigError, match=r"cheap: .*'provider/model'"):
        settings_from_mapping({**BASE, "cheap": {"model": model}})


@pytest.mark.parametrize("name", ["", "$OPENAI_API_KEY", "OPENAI API KEY"], ids=repr)
def test_an_api_key_env_that_cannot_name_a_variable_is_a_config_error(name: str) -> None:
    # `$OPENAI_API_KEY` names no variable: calls went out without a key. An empty name was taken as unset.
    with pytest.raises(ConfigError, match=r"cheap\.api_key_env: String should"):
        settings_from_mapping({**BASE, "cheap": {"model": "openai/gpt-4o-mini", "api_key_env": name}})


@pytest.mark.parametrize(
    "models",
    [
        # Bedrock names a model after its vendor ("anthropic.claude-..."), with a region before it at times.
        ["bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic/claude-sonnet-4-5", "vertex_ai/claude-opus-4"],
        ["bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic/claude-opus-4-1"],
        # A version glued to the name (llama3.1, Qwen2.5) is still that family.
        [
            "ollama/llama3.1",
            "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "bedrock/meta.llama3-1-70b-instruct-v1:0",
        ],
        ["together_ai/Qwen/Qwen2.5-72B-Instruct-Turbo", "openai/qwen-max"],
        ["openai/ft:gpt-4o-mini-2024-07-18:acme::abc123", "openai/gpt-4o"],  # a fine-tuned GPT
    ],
)
def test_warns_when_proposers_are_one_family_however_their_provider_names_them(
    caplog: pytest.LogCaptureFixture, models: list[str]
) -> None:
    with caplog.at_level(logging.WARNING):
        settings_from_mapping({**BASE, "proposers": [{"model": model} for model in models]})
    assert "one model family" in caplog.text


def test_diverse_proposers_and_an_explicit_family_give_no_family_warning() -> None:
    assert settings_from_mapping(BASE).diversity_warning() is None
    mixed = [{"model": "openai/gpt-4o"}, {"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"}]
    assert settings_from_mapping({**BASE, "proposers": mixed}).diversity_warning() is None
    named = [{"model": "openai/my-model-a", "family": "mistral"}, {"model": "openai/my-model-b", "family": "qwen"}]
    assert settings_from_mapping({**BASE, "proposers": named}).diversity_warning() is None


def test_a_client_ttl_cap_below_the_default_ttl_is_a_config_error() -> None:
    # A client asking for longer than max_ttl_s got less than one asking for nothing (the default ttl_s).
    with pytest.raises(ConfigError, match=r"cache: .*max_ttl_s \(60\) is below ttl_s \(3600\)"):
        settings_from_mapping({**BASE, "cache": {"ttl_s": 3600, "max_ttl_s": 60}})
    assert settings_from_mapping({**BASE, "cache": {"ttl_s": 60, "max_ttl_s": 60}}).cache.max_ttl_s == 60


def test_client_overrides_name_routes_a_client_may_force() -> None:
    assert settings_from_mapping({**BASE, "policy": {"client_overrides": []}}).policy.client_overrides == ()
    with pytest.raises(ConfigError, match=r"policy\.client_overrides\.0"):
        settings_from_mapping({**BASE, "policy": {"client_overrides": ["strong"]}})
