"""One colour per persona category (the same on the judge and the human side), and per line of a split chart:
judging's figures and the browse charts draw with it."""

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
