from sfu.forwarding.nack import NackGenerator
from sfu.rtp.statistics import ReceiveStatistics


def test_nack_generator_reports_gaps_once_then_retries() -> None:
    g = NackGenerator(retry_interval=0.05)
    assert g.add(100, 0.0) == []
    assert g.add(103, 0.0) == [101, 102]
    assert g.poll(0.01) == []
    assert g.poll(0.06) == [101, 102]
    assert g.add(101, 0.07) == []  # recovered
    assert g.missing == [102]
    for i in range(10):
        g.poll(1.0 + i)
    assert g.missing == [] and g.given_up == 1  # given up after the retries


def test_nack_generator_wraps() -> None:
    g = NackGenerator()
    g.add(65534, 0)
    assert g.add(1, 0) == [65535, 0]


def test_receive_statistics_report_block() -> None:
    s = ReceiveStatistics(90000)
    for seq in (65534, 65535, 1, 2):  # 0 lost, wraps
        s.add(seq, seq * 3000, seq / 30, 100)
    block = s.report_block(ssrc=7, now=10.0)
    assert block.ssrc == 7
    assert block.packets_lost == 1
    assert block.highest_sequence == (1 << 16) | 2
    assert block.fraction_lost == 256 // 5
    block = s.report_block(ssrc=7, now=11.0)
    assert block.fraction_lost == 0
