"""Load generation for the SFU: simulated peers over the real signaling and real UDP."""
