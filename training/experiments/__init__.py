"""The paper's experiment grid (`grid`: `python -m training experiments`) and its
Table 1 / Table 2 writers with the paper's reference figures (`tables`)."""
