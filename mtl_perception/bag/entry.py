"""Console script `evaluate_bag` (setup.py): the import of the evaluation (torch, rosbags:
seconds) runs with Ctrl-C and SIGTERM as one line, like the evaluation itself."""

from mtl_perception.exits import guarded_entry

evaluate_bag = guarded_entry("mtl_perception.bag.evaluate:main", "evaluate_bag")
