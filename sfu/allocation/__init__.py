"""Sans-IO downlink allocation: one subscriber's estimate shared among the videos it
receives (:mod:`.allocator`, the arithmetic), and the policy over time (:mod:`.downlink`:
pause debounce, holds, fast reallocation, when and how much to probe).  Above ``forwarding``
and ``bwe``: it reads their levels and estimates, they know nothing of it."""
