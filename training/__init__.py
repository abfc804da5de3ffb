"""Training, datasets and experiments for mtl_perception.

A sibling of the runtime package: it imports `mtl_perception`, never the
reverse, so a robot installs the runtime without any of this.
"""
