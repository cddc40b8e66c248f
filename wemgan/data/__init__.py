"""Data: SynthFACS, the procedural face renderer with exact Action Unit ground truth, and dataset loading."""
