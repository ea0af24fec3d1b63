"""The console application and its command line."""
