"""Optional C accelerators of the classifier's single-query path (everything else is in pyproject.toml).

Each extension is optional: where no C compiler is available the build goes on without it and the
classifier uses its numpy implementation, which gives the same scores (tests compare the two).
"""

from setuptools import Extension, setup

NATIVE_EXTENSIONS = [
    # Few-shot detection (classifier.text.focus_final_item). `depends` rebuilds on a header change and
    # puts the header in the sdist.
    Extension(
        "classifier._native_focus",
        ["classifier/_native_focus.c", "classifier/_native_focus_scan.c", "classifier/_native_focus_rules.c"],
        depends=["classifier/_native_focus.h"],
        optional=True,
    ),
    # Hashed n-gram features and weight sums of one query (classifier.features.Featurizer.native_features).
    Extension(
        "classifier._native_features",
        [
            "classifier/_native_features.c",
            "classifier/_native_features_tables.c",
            "classifier/_native_features_scan.c",
        ],
        depends=["classifier/_native_features.h"],
        libraries=["m"],
        optional=True,
    ),
]

setup(ext_modules=NATIVE_EXTENSIONS)
