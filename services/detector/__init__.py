"""The detector: routes every transaction to the legit or the fraud topic, saying why."""
