"""HRF Explorer: ``python app.py`` serves the app on http://127.0.0.1:7860 (the file Spaces and the README name).

The app is the package :mod:`explorer` (the page, its tabs, the server); the work lives in :mod:`hrf_core`.
"""

from explorer.server import main

if __name__ == "__main__":
    main()
