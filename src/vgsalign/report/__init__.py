"""The HTML report: page, figures, alignment examples."""
