"""What the scripts share and what sits on top of the library: the command-line layer (`cli`),
experiment grids and their report, plots, and loading the PyTorch tutorial's weights."""
