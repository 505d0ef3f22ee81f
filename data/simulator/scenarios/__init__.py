"""The fraud scenarios, one module each, and what they share (common.py). Each returns the rows
of its scenario; imports only data.simulator."""
