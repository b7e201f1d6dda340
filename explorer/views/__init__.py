"""What the app shows, computed without gradio, one module per tab.

Everything here is plain Python returning plain data, PIL images or HTML strings, so ``app.py`` stays
UI-only and these functions are testable on their own. Heavy modules (torch, diffusers) are imported
inside the functions that need them: importing these modules is instant.

- :mod:`~explorer.views.train`: the form, presets, the window note, choices, the x0 strip;
- :mod:`~explorer.views.live`: the status line and the live feed's payload (trajectories, grids,
  the DDPO reference and where the run stands against it);
- :mod:`~explorer.views.compare`: sample sources, grids, metrics, projection, hand-over;
- :mod:`~explorer.views.runs`: the table of runs, details, checkpoints;
- :mod:`~explorer.views.results`: the report and its figures;
- :mod:`~explorer.views.common`: labels, formatting and the model cache they share.
"""
