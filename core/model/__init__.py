"""The ground floor: money and units, bounds, errors, events, instruments, the parsed scenario's
values and text typed by people. Imports nothing of the project above it."""
