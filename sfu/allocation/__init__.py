"""Sans-IO downlink allocation: one subscriber's estimate shared among the videos it
receives (:mod:`.allocator`).  Above ``forwarding`` and ``bwe``: it reads their levels and
estimates, they know nothing of it."""
