"""Base models: the registry and loading of diffusers folders (safetensors only), one object per model family
(:mod:`hrf_core.models.families`), pickle conversion, the embedded digits models and their reproducible
pretraining."""
