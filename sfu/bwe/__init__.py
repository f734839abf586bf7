"""Send-side bandwidth estimation (Google Congestion Control, draft-ietf-rmcat-gcc-02 and
libwebrtc goog_cc), sans-IO: feed it sent packets, transport feedback, REMB, RTT and probe
results; read :attr:`BandwidthEstimator.estimate`."""

from .estimator import BandwidthEstimator

__all__ = ["BandwidthEstimator"]
