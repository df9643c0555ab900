"""Search: configuration, candidate evaluation and (in later stages) the search strategies."""
