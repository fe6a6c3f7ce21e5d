"""Operator scripts: ape deploy, the demo, artifact builds, and the anvil launcher they share."""
