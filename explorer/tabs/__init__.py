"""The page's tabs: one module each, owning its layout, events and handlers."""
