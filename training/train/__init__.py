"""The training loop (`python -m training train`): settings (`config`), data (`data`),
one iteration of each method (`steps`), the loop itself (`trainer`), logging (`log`),
pretrained weights (`pretrained`), the run folder and exact resume (`resume`),
torchrun (`distributed`)."""
