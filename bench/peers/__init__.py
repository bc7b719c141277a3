"""The systems measured beside mom, one module each; every `run(ctx)` starts its system, measures, stops it."""
