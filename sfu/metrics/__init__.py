"""Prometheus metrics (``/metrics``): :class:`~.registry.Metrics`, one per application."""

from .registry import Metrics

__all__ = ["Metrics"]
