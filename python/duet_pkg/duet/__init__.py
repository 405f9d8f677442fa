"""duet: text-to-image with dual-branch diffusion transformers, from Python.

    import duet
    pipe = duet.Pipeline.from_pretrained("models/fashion-duet")
    out = pipe("a photo of a sneaker", seed=7)
    out.images[0].save("sneaker.png")       # PIL image; .info["parameters"] holds the settings

The package drives libduet.so (the C ABI, include/duet.h) through ctypes: no extension module
to compile, the GIL is released while the engine runs, and results are read from the engine's
buffers without intermediate copies. See docs/python.md.
"""
from __future__ import annotations

from . import _capi
from ._errors import CancelledError, Error
from .pipeline import DenoiseOutput, Pipeline, PipelineOutput, PromptEncoding

__all__ = ["Pipeline", "PipelineOutput", "PromptEncoding", "DenoiseOutput", "Error",
           "CancelledError", "samplers", "info", "__version__"]


def _lib():
    try:
        return _capi.load()
    except OSError as e:
        raise Error(str(e), "not found") from None


def samplers() -> list:
    """The sampler names accepted by ``Pipeline.__call__(sampler=...)``."""
    lib = _lib()
    return [lib.duet_sampler_name(i).decode() for i in range(lib.duet_sampler_count())]


def info() -> dict:
    """The library's version, C ABI version, file, and samplers."""
    lib = _lib()
    return {"version": lib.duet_version().decode(), "abi_version": lib.duet_abi_version(),
            "library": _capi.library_path(), "samplers": samplers()}


__version__ = "0.1"
