"""Base models: the registry and loading of diffusers folders (safetensors only), pickle conversion, the embedded
digits models and their reproducible pretraining."""
