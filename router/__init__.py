"""moa-router: a selective-escalation router for Mixture-of-Agents inference."""

__version__ = "0.1.0"
