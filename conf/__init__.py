"""The default decisions, in YAML, shipped inside the package (`CADENCE_CONF` points elsewhere).

Each file is read into a typed model by `cadence.flows.conf`."""
