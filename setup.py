"""lf2_plugin: LF2 (Learning Feature Fusion, Ding & Zhou, ICPR 2022) for fast-reid.

fastreid itself is deliberately not in install_requires: PyPI fastreid==1.4.0 pins torch==1.13.1 and
torchvision==0.14.1, which have no Python 3.11 wheels, so pip would refuse the whole install. Install it with
``pip install --no-deps fastreid==1.4.0`` and ``pip install -r requirements-fastreid.txt`` (``make venv`` does both).
"""
from setuptools import find_packages, setup

setup(
    name="lf2_plugin",
    version="0.1.0",
    description="LF2 unsupervised domain adaptive person re-ID as a fast-reid plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lf2_plugin", "lf2_plugin.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "numpy>=1.23",
        "scipy>=1.9",
        "scikit-learn>=1.2",
        "Pillow>=9.0",
        "opencv-python-headless>=4.7",
        "tqdm>=4.64",
        "matplotlib>=3.7",
        "tabulate>=0.9",
        "yacs>=0.1.8",
        "tensorboard>=2.12",
    ],
    extras_require={
        # faiss ships as one module in two mutually exclusive wheels: pick exactly one.
        "cpu": ["faiss-cpu>=1.7.3"],
        "gpu": ["faiss-gpu>=1.7.3"],
        "torchreid": ["torchreid==0.2.5", "gdown", "six"],
        # ruff pinned: another version may format or lint the same code differently.
        "test": ["pytest>=7", "ruff==0.17.6"],
        # tools/export.py: ONNX export and its check with onnxruntime.
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
