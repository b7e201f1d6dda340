"""The run store: run folders and their files, checkpoints, and whether a run is trained right now."""
