"""Build the optional Cython extension ``purelb._native``.

The extension is optional: without a C compiler (or Cython) the package installs its
pure-Python twin (``purelb._fallback``) and ``purelb.fast`` says so once at import.
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

NATIVE_SOURCE = "native/_native.pyx"


class OptionalBuildExt(build_ext):
    """Turn any compiler failure into a warning: the fallback gives identical answers."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            print(f"WARNING: purelb._native was not built ({exc}); using the pure-Python fallback")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"WARNING: building {ext.name} failed ({exc}); using the pure-Python fallback")


def native_extensions() -> list:
    if not os.path.exists(NATIVE_SOURCE):
        print(f"WARNING: {NATIVE_SOURCE} is missing; using the pure-Python fallback")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("WARNING: Cython is not available; using the pure-Python fallback")
        return []
    from setuptools import Extension

    exts = cythonize(
        [Extension("purelb._native", [NATIVE_SOURCE], extra_compile_args=["-O3"])],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
        build_dir="build/cython",
    )
    for ext in exts:  # cythonize() drops Extension(optional=True): set it afterwards
        ext.optional = True
    return exts


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
