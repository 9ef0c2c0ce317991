"""Weir control plane: config source -> validate -> translate -> snapshot -> ADS."""
