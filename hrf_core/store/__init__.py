"""The run store: run folders and their files, checkpoints, safetensors read with one-line errors, and whether a run
is trained right now. It imports nothing of the library above it."""
