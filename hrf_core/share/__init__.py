"""What a run gives others: experiment trackers, an exported diffusers pipeline, a replay GIF."""
