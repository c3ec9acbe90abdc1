import pytest

from router.config import ModelEntry
from router.providers.base import CompletionRequest, Usage
from router.providers.pricing import Prices, UnknownPriceError, estimate_prompt_tokens, estimate_tokens, prices_for


def test_the_entrys_own_prices_win() -> None:
    entry = ModelEntry(model="openai/gpt-4o-mini", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    assert prices_for(entry) == Prices(1e-6, 2e-6)


def test_prices_come_from_litellms_cost_map() -> None:
    prices = prices_for(ModelEntry(model="openai/gpt-4o-mini"))
    assert prices.input_per_token > 0 and prices.output_per_token > prices.input_per_token
    # Provider-prefixed names resolve too (litellm's map keys some models with the prefix).
    assert prices_for(ModelEntry(model="anthropic/claude-sonnet-4-5")).input_per_token > prices.input_per_token


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(UnknownPriceError, match="input_cost_per_token"):
        prices_for(ModelEntry(model="openai/no-such-model-xyz"))


def test_cost_is_tokens_times_prices() -> None:
    assert Prices(1e-6, 3e-6).cost(Usage(100, 10)) == pytest.approx(100e-6 + 30e-6)


def test_token_estimate() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


def test_prompt_estimate_counts_the_text_of_content_parts_not_their_python_form() -> None:
    text = "take ibuprofen for a headache, twice a day"  # 42 characters: 11 tokens
    as_string = CompletionRequest(messages=[{"role": "user", "content": text}])
    as_parts = CompletionRequest(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": text[:14]}, {"type": "text", "text": text[15:]}]}
        ]
    )
    assert estimate_prompt_tokens(as_string) == 11
    assert estimate_prompt_tokens(as_parts) == 11  # the parts' text and the newline between them
