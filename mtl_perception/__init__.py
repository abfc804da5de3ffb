"""mtl_perception: joint action and gesture recognition with one multi-task 3D ResNet.

The runtime package: models, checkpoints, preprocessing and the streaming
pipeline that the ROS 2 node and offline bag evaluation share. It never
imports the sibling `training` package.
"""

__version__ = "0.1.0"
