"""Sans-IO codec payload knowledge: payload descriptors and keyframe detection."""
