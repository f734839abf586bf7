from sfu.forwarding.munger import RtpMunger


def test_first_packet_starts_at_the_initial_values() -> None:
    m = RtpMunger(initial_sequence_number=500, initial_timestamp=1000)
    assert m.forward(40000, 123456) == (500, 1001)
    assert m.forward(40001, 126456) == (501, 4001)


def test_dropped_packets_leave_no_gap_but_losses_do() -> None:
    m = RtpMunger(100, 0)
    out = [m.forward(10, 0)]
    m.drop(11)
    m.drop(12)
    out.append(m.forward(13, 3000))
    # 14 lost upstream (never seen), 15 arrives
    out.append(m.forward(15, 6000))
    assert [o[0] for o in out if o] == [100, 101, 103]


def test_late_packet_gets_the_offset_of_its_slot() -> None:
    m = RtpMunger(0, 0)
    m.forward(10, 0)
    m.forward(12, 0)  # 11 missing
    m.drop(13)
    m.forward(14, 0)
    late = m.forward(11, 0)  # recovered by RTX upstream
    assert late is not None and late[0] == 1
    assert m.forward(13, 0) is None  # a slot we dropped stays dropped
    assert m.forward(12, 0) == (2, 1)  # duplicate maps to the same number


def test_sequence_and_timestamp_wrap() -> None:
    m = RtpMunger(65534, 0xFFFFFFF0)
    assert m.forward(1, 0) == (65534, 0xFFFFFFF1)
    assert m.forward(2, 0x20) == (65535, 0x11)
    assert m.forward(3, 0x40) == (0, 0x31)


def test_rebase_continues_after_a_source_change() -> None:
    m = RtpMunger(10, 1000)
    m.forward(500, 90000)
    m.forward(501, 93000)
    m.rebase(timestamp_gap=3000)
    assert m.forward(7, 5) == (12, 1000 + 1 + 3000 + 3000)


def test_very_old_packet_is_refused() -> None:
    m = RtpMunger(0, 0)
    for seq in range(2000):
        m.forward(seq, 0)
    assert m.forward(5, 0) is None
