"""A selective forwarding unit for layered (SVC) real-time video, on aiortc."""

__version__ = "0.1.0"
