"""`make demo`: the main job on the embedded local server (`python -m demo`)."""
