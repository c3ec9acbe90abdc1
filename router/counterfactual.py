"""The "mixture on everything" counterfactual: what the traffic would have cost had every request run the
mixture, estimated per request (the savings the dashboard, /v1/stats and `report` show are measured against it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from router.events import RequestEvent
from router.prompts import with_candidates
from router.providers.base import Usage
from router.providers.pricing import Prices, estimate_tokens, prices_for

if TYPE_CHECKING:
    from router.providers.registry import ProviderSet


class MixtureCostEstimator:
    """What a request answered by one model (cheap or strong) would have cost through the mixture.

    Method: take the answering call's usage, p prompt and c completion tokens, and assume each of the
    N proposers reads the same prompt and writes as long an answer (c tokens). Layer 1 costs
    sum_i(p * in_i + c * out_i). The aggregator, like every proposer of a layer after the first, reads
    the prompt plus the aggregation instructions (o tokens, counted as the router counts text) plus
    the N candidate answers: q = p + o + N * c tokens; it writes c tokens. So the estimate is
      sum_i(p*in_i + c*out_i) + (layers-1) * sum_i(q*in_i + c*out_i) + q*in_agg + c*out_agg.
    Prices come from the configured entries via `prices_for`, as for real calls.
    """

    def __init__(self, proposers: Sequence[Prices], aggregator: Prices, layers: int = 1) -> None:
        self.proposers = tuple(proposers)
        self.aggregator = aggregator
        self.layers = layers
        count = len(self.proposers)
        empty = [""] * count
        self.overhead_tokens = estimate_tokens(str(with_candidates([], empty)[0]["content"]))

    @classmethod
    def from_providers(cls, providers: ProviderSet, layers: int) -> MixtureCostEstimator:
        return cls([prices_for(p.entry) for p in providers.proposers], prices_for(providers.aggregator.entry), layers)

    def estimate(self, usage: Usage) -> float:
        p, c = usage.prompt_tokens, usage.completion_tokens
        if p == 0 and c == 0:
            return 0.0
        q = p + self.overhead_tokens + len(self.proposers) * c
        first = sum(prices.cost(Usage(p, c)) for prices in self.proposers)
        later = (self.layers - 1) * sum(prices.cost(Usage(q, c)) for prices in self.proposers)
        return first + later + self.aggregator.cost(Usage(q, c))


def counterfactual_usd(event: RequestEvent, estimator: MixtureCostEstimator) -> float:
    """The mixture-on-everything cost of one request. A mixture request costs what it cost; a request
    answered by one model is estimated from that call's usage, billed whether it finished or not; a
    cache hit is a hit in that world too (it costs nothing in both, and what the cache saved is counted
    apart). For an answer cut off (its client left) the estimate is a lower bound: the mixture's
    proposers would have written whole answers before the aggregator began, not as few words as were
    sent; left out, the cut-off call counted in the spend but not here, as a loss."""
    if event.cache == "hit":
        return 0.0
    if event.route in ("cheap", "strong"):
        answered = Usage()
        for call in event.calls:
            # A primary its fallback replaced is billed, but the mixture would have answered once too.
            if call.role == event.route and not call.replaced_by_fallback:
                answered = answered + call.usage
        return estimator.estimate(answered)
    return event.cost_usd
