"""duet_ref: the PyTorch reference (executable spec), trainer and exporter of duet models."""
