"""The generator: synthetic card transactions at a rate that can change live."""
