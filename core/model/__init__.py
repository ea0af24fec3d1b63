"""The ground floor: money and units, bounds, errors, events, instruments, the parsed scenario's
values, text typed by people and the array helpers every layer shares. Imports nothing of the
project above it."""
