"""Helpers shared by the tests (``from support.clients import SignalingClient``): test
modules import from here, never from one another."""
