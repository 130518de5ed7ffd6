"""bench: benchmarks that print tables of ratios measured side by side in one run
(direct vs through the edge, local disk vs replicated volume, ...). Not tests."""
