"""The viewers' quality, as they measure it: their reports, and the receiver-CPU fit."""
