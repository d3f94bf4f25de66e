"""`make demo`: the main job end to end on this machine (enrich, send a sequence, read the replies)."""
