"""Build of the optional CPU extension (exact Pólya-gamma draws as an XLA FFI custom call).

Everything else is configured in pyproject.toml. The XLA FFI headers ship inside ``jaxlib``
(a build requirement); if the compiler or the headers are missing, the extension is skipped
and the pure-JAX sampler is used everywhere.
"""

import os

from setuptools import Extension, setup


def _xla_ffi_include() -> str:
    import jaxlib

    return os.path.join(os.path.dirname(jaxlib.__file__), "include")


setup(
    ext_modules=[
        Extension(
            "numpyro_ext.distributions._polya_gamma_cpu",
            ["numpyro_ext/distributions/_polya_gamma_cpu.cc"],
            include_dirs=[_xla_ffi_include()],
            extra_compile_args=["-std=c++17", "-O3", "-fno-math-errno", "-fvisibility=hidden"],
            language="c++",
            optional=True,
        )
    ]
)
