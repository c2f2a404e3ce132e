"""Build hook only (the metadata is in pyproject.toml): setuptools stages a wheel's files in ./build and would leave
that folder in the checkout after ``pip install .``; stage them in a temporary folder, removed when the build
process exits."""
import atexit
import shutil
import tempfile

from setuptools import setup

_staging = tempfile.mkdtemp(prefix="groupsparse-build-")
atexit.register(shutil.rmtree, _staging, True)
setup(options={"build": {"build_base": _staging}, "egg_info": {"egg_base": _staging}})
