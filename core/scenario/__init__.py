"""Reading a `risk-scenario/1` file: decoding with bounds, parsing and validation, the crowd."""
