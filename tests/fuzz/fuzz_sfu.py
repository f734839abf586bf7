"""Long-running fuzzing of the SFU's parsers, outside the test suite (see docs/fuzzing.md).

    python tests/fuzz/fuzz_sfu.py --list
    python tests/fuzz/fuzz_sfu.py rtp -max_total_time=300          # atheris (libFuzzer flags)
    python tests/fuzz/fuzz_sfu.py rtp --hypothesis --seconds 300   # without atheris

With atheris (``pip install atheris``) the sfu package is instrumented for coverage and
libFuzzer drives the target; its corpus lives in ``$SFU_FUZZ_DIR/<target>/corpus`` (default
``/tmp/sfu-fuzz``), seeded from the fixtures, and a failing input is written next to it as
``crash-*``.  Replay one with ``python tests/fuzz/fuzz_sfu.py TARGET --replay FILE``.
Without atheris, ``--hypothesis`` generates and mutates inputs with hypothesis instead
(no coverage guidance) and prints the smallest failing input it finds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]


def _load(
    instrument: bool,
) -> tuple[dict[str, Callable[[bytes], None]], Callable[[], dict[str, list[bytes]]]]:
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["sfu"]):
            import targets
    else:
        import targets
    from seeds import seeds

    return targets.TARGETS, seeds


def _work_dir(name: str) -> Path:
    path = Path(os.environ.get("SFU_FUZZ_DIR", "/tmp/sfu-fuzz")) / name
    (path / "corpus").mkdir(parents=True, exist_ok=True)
    return path


def run_atheris(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    targets, seeds = _load(instrument=True)
    fn = targets[name]
    work = _work_dir(name)
    corpus = work / "corpus"
    if not any(corpus.iterdir()):
        for data in seeds()[name]:
            (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    defaults = ["-timeout=10", "-rss_limit_mb=2048"]  # a slow or hungry input is a finding
    flags = {a.split("=")[0] for a in libfuzzer_args}
    extra = [d for d in defaults if d.split("=")[0] not in flags]
    from seeds import dictionaries

    words = dictionaries().get(name)
    if words and "-dict" not in flags:
        path = work / "dictionary"
        path.write_text("".join(f'"{_escape(w)}"\n' for w in words))
        extra.append(f"-dict={path}")
    argv = [sys.argv[0], *extra, *libfuzzer_args, f"-artifact_prefix={work}/", str(corpus)]
    atheris.Setup(argv, fn)
    atheris.Fuzz()


def _escape(word: bytes) -> str:
    """A libFuzzer dictionary entry: printable ASCII as is, the rest as \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\x{b:02x}" for b in word)


def _mutations(seed: bytes, draw: Callable[..., int]) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(1, 8)):
        op = draw(0, 4)
        at = draw(0, len(data)) if data else 0
        if op == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] ^= 1 << draw(0, 7)
        elif op == 1:  # insert bytes
            data[at:at] = bytes(draw(0, 255) for _ in range(draw(1, 4)))
        elif op == 2 and data:  # delete a range
            del data[at : at + draw(1, 16)]
        elif op == 3 and data:  # interesting values
            data[min(at, len(data) - 1)] = (0, 1, 0x7F, 0x80, 0xFF)[draw(0, 4)]
        elif op == 4 and len(data) > 1:  # truncate
            del data[at:]
    return bytes(data)


def run_hypothesis(name: str, seconds: float) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    targets, seeds = _load(instrument=False)
    fn = targets[name]
    pool = seeds()[name]

    @st.composite
    def inputs(draw: st.DrawFn) -> bytes:
        if pool and draw(st.booleans()):
            seed = draw(st.sampled_from(pool))
            return _mutations(seed, lambda lo, hi: draw(st.integers(lo, hi)))
        return draw(st.binary(max_size=4096))

    @settings(
        max_examples=5000,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs())
    def check(data: bytes) -> None:
        fn(data)

    start = time.monotonic()
    rounds = 0
    while time.monotonic() - start < seconds:
        try:
            check()
        except Exception:
            traceback.print_exc()
            return 1
        rounds += 1
    print(f"{name}: {rounds * 5000} inputs in {time.monotonic() - start:.0f} s, no failure")
    return 0


def replay(name: str, path: str) -> int:
    targets, _ = _load(instrument=False)
    targets[name](Path(path).read_bytes())
    print(f"{name}: {path} passes")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--hypothesis", action="store_true", help="no atheris: use hypothesis")
    parser.add_argument("--seconds", type=float, default=60, help="hypothesis: how long")
    parser.add_argument("--replay", metavar="FILE", help="run the target on one input")
    args, libfuzzer_args = parser.parse_known_args()
    targets, _ = _load(instrument=False) if args.list else ({}, None)
    if args.list:
        print("\n".join(targets))
        return 0
    if not args.target:
        parser.error("a target is needed (--list shows them)")
    if args.replay:
        return replay(args.target, args.replay)
    if args.hypothesis:
        return run_hypothesis(args.target, args.seconds)
    run_atheris(args.target, libfuzzer_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
