"""The Feast repo: declarations (entities, sources, views, services) and the config template."""
