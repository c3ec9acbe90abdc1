"""Optional C accelerators of the classifier's single-query path (everything else is in pyproject.toml).

Each extension is optional: where no C compiler is available the build goes on without it and the
classifier uses its numpy implementation, which gives the same scores (tests compare the two).
"""

from setuptools import Extension, setup

NATIVE_EXTENSIONS = [
    # Few-shot detection (classifier.text.focus_final_item).
    Extension("classifier._native_focus", ["classifier/_native_focus.c"], optional=True),
    # Hashed n-gram features and weight sums of one query (classifier.features.Featurizer.native_features).
    Extension("classifier._native_features", ["classifier/_native_features.c"], libraries=["m"], optional=True),
]

setup(ext_modules=NATIVE_EXTENSIONS)
