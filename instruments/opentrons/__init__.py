"""Opentrons robots: protocol rendering for OT-2 and Flex, and simulation in a separate environment."""
