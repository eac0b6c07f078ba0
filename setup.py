"""fink_t2: real-time t2 (Tiny Time-series Transformer) classification of ZTF alerts."""
from setuptools import find_packages, setup

# What `classify`, `replay` and the Fink UDF need, on Python 3.9-3.11 (a Fink deployment's Python
# and Spark: no pyspark pin here; the stream takes [stream], a Fink executor [fink]).
CORE = [
    "numpy>=2,<3",
    "pandas>=2.2,<3",  # pyspark 4.0 does not support pandas 3
    "pyarrow>=18,<27",  # 26.0.1 tested; Parquet reading and Spark's Arrow transfer
    "fastavro>=1.9.4,<2",
    # fink_t2.alerts.compiled and science.gp_compiled (both have a numpy fallback); 0.68 supports numpy < 2.6
    # and Python >= 3.10
    "numba>=0.68.1,<0.70; python_version >= '3.10'",
    "confluent-kafka>=2.5,<3",
    "ai-edge-litert==2.3.0; python_version >= '3.10'",
    "ai-edge-litert>=1.4,<2; python_version < '3.10'",  # the last series with Python 3.9 wheels
    "tomli>=2; python_version < '3.11'",  # tomllib before 3.11
    "tqdm>=4.66",
]
#: the streaming job: the pyspark the Kafka connector jars are built for (jvm/spark/pom.xml)
STREAM = ["pyspark==4.0.0"]  # 4.1.1 has SPARK-57438
#: the Fink science-module UDFs (fink_t2.spark.fink_udf) inside a Fink deployment's Spark
FINK = ["pyspark>=3.4,<4.1"]
# Optional, only for the tools (fink_t2/tools/extras.py names the modules each extra provides):
PLOT = ["matplotlib>=3.8"]  # fink-t2 plot, the demo's summary PNG, the bench chart
BENCH = [
    *PLOT,
    "scipy>=1.11",  # the per-alert reference GP (tools/reference_gp.py)
    "threadpoolctl>=3.2",  # single-threaded BLAS on one pinned core
    "psutil>=5.9",  # RSS of Spark's Python workers
    "george==0.4.4",  # the deployed reference GP (scipy fit used when absent)
    "pyinstrument>=4.6",
]

MONITORING = ["prometheus-client>=0.17,<1"]  # [monitoring] prometheus = true (fink_t2/spark/monitoring.py)

setup(
    name="fink_t2",
    version="0.1.0",
    description="t2 transient classification of ZTF alerts for Spark/Kafka alert brokers",
    python_requires=">=3.9,<3.12",
    packages=find_packages(include=["fink_t2", "fink_t2.*"]),
    # the models with their metadata (sha256-checked at load) and the config templates: found with
    # importlib.resources (fink_t2.config.package_file) from a wheel, from any working directory
    package_data={"fink_t2": ["data/models/*.tflite", "data/models/*.json", "data/models/LICENSE.*",
                              "data/schemas/ztf/*.avsc", "data/schemas/ztf/README.md", "conf/*.toml",
                              "conf/*.properties"]},
    install_requires=CORE,
    extras_require={
        "stream": STREAM,
        "fink": FINK,
        "plot": PLOT,
        "bench": BENCH,
        "monitoring": MONITORING,
        # the tests run plot, bench and the reference GP; pyyaml reads docker/compose.yaml
        "test": ["pytest>=8", "hypothesis>=6.100", "pyyaml>=6,<7", *BENCH, *MONITORING],
        # tf-keras and tfmot need --no-deps next to tensorflow-cpu: `make train-venv` installs them, and
        # (--no-deps too) ASTROMER 0.1.8 + tensorboard, the oracle of the v0 test; joblib is imported by it
        "train": ["tensorflow-cpu==2.21.0", "dm-tree", "mock", "joblib", "scikit-learn>=1.4,<2", "scipy>=1.11", *PLOT],
    },
    entry_points={"console_scripts": ["fink-t2=fink_t2.cli:main"]},
)
