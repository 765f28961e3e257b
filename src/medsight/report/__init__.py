"""Reports: HTML pages with embedded plots, model cards."""
