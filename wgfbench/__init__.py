"""wgfbench: benchmark and reproducibility suite for neural Wasserstein gradient flows (JKO schemes)."""

__version__ = "0.1.0"
