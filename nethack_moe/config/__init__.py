"""The training config, the curriculum phases and the presets (``presets/*.yaml``)."""
