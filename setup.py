"""Build the optional Cython extension ``purelb._native``.

The extension is optional: without a C compiler (or Cython) the package installs its
pure-Python twin (``purelb._fallback``) and ``purelb.fast`` says so once at import.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

NATIVE_SOURCE = "native/_native.pyx"
CRD_SOURCES = "deploy/crds/*.yaml"


class BuildPyWithCrds(build_py):
    """Ship deploy/crds inside the package as ``purelb/crds`` (one source of truth).

    Embedded mode and the API server register these CRDs; a wheel or image install has
    no source tree to find them in, so the build copies them next to the code.
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads deploy/crds from the source tree
        target = os.path.join(self.build_lib, "purelb", "crds")
        self.mkpath(target)
        for path in sorted(glob.glob(CRD_SOURCES)):
            self.copy_file(path, os.path.join(target, os.path.basename(path)))


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


setup(
    ext_modules=native_extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithCrds},
)
