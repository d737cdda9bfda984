"""Editor workflow files: the pure core (definition, inputs, graph, outputs) and its I/O shells."""
