"""Stand-ins for things that cannot exist in a test: an LLM service, serial devices, a robot."""
