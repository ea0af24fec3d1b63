"""The incident report for people: PDF pages and their charts."""
