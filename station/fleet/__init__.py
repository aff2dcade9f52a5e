"""Looking after an installed fleet (issue 11): firmware bundles and their delivery."""
