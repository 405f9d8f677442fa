"""ctypes declarations of libduet.so's C ABI (include/duet.h). Internal to the duet package.

ctypes.CDLL releases the GIL for the duration of every call into the library, so other Python
threads run while duet generates; the progress callback re-acquires it for each step.
"""
from __future__ import annotations

import ctypes
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
ABI_VERSION = 1  # DUET_ABI_VERSION this module was written for

# duet_status
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_CANCELLED = 7

REFINE_EVERY, REFINE_STEPS, REFINE_ALL, REFINE_NONE = 0, 1, 2, 3
TIMINGS = ("encode", "prepare", "denoise", "finish", "total")  # duet_timing order


class duet_model_params(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("precision", ctypes.c_char_p),
                ("backend", ctypes.c_char_p)]


class duet_generate_params(ctypes.Structure):
    _fields_ = [
        ("prompt", ctypes.c_char_p),
        ("prompts", ctypes.POINTER(ctypes.c_char_p)),
        ("prompt_encoding", ctypes.c_void_p),
        ("negative_prompt", ctypes.c_char_p),
        ("negative_encoding", ctypes.c_void_p),
        ("num_images", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("steps", ctypes.c_int),
        ("sampler", ctypes.c_char_p),
        ("karras", ctypes.c_int),
        ("cfg_scale", ctypes.c_float),
        ("seed", ctypes.c_int64),
        ("rng", ctypes.c_char_p),
        ("refine_mode", ctypes.c_int),
        ("refine_every", ctypes.c_int),
        ("refine_steps", ctypes.POINTER(ctypes.c_int)),
        ("num_refine_steps", ctypes.c_int),
        ("init_image", ctypes.POINTER(ctypes.c_float)),
        ("strength", ctypes.c_double),
        ("png_bit_depth", ctypes.c_int),
        ("cache", ctypes.c_char_p),
    ]


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def library_candidates():
    """Where libduet.so is looked for, in order: $DUET_LIBRARY, then next to this package (where
    the install puts it)."""
    env = os.environ.get("DUET_LIBRARY")
    if env:
        return [env]
    return [os.path.join(_HERE, name) for name in ("libduet.so.0", "libduet.so")]


def _declare(lib):
    P, I, D, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    E = ctypes.POINTER(ctypes.c_void_p)  # duet_error** and other out-handles
    F = ctypes.POINTER(ctypes.c_float)
    sigs = {
        "duet_version": (S, []),
        "duet_abi_version": (I, []),
        "duet_status_name": (S, [I]),
        "duet_sampler_count": (I, []),
        "duet_sampler_name": (S, [I]),
        "duet_error_code": (I, [P]),
        "duet_error_message": (S, [P]),
        "duet_error_free": (None, [P]),
        "duet_model_params_default": (duet_model_params, []),
        "duet_model_load": (I, [S, ctypes.POINTER(duet_model_params), E, E]),
        "duet_model_free": (None, [P]),
        "duet_model_name": (S, [P]),
        "duet_model_precision": (S, [P]),
        "duet_model_channels": (I, [P]),
        "duet_model_height": (I, [P]),
        "duet_model_width": (I, [P]),
        "duet_model_default_cfg_scale": (ctypes.c_float, [P]),
        "duet_model_default_refine_every": (I, [P]),
        "duet_model_parameters": (ctypes.c_int64, [P]),
        "duet_prompt_encode": (I, [P, S, E, E]),
        "duet_prompt_text": (S, [P]),
        "duet_prompt_free": (None, [P]),
        "duet_generate_params_default": (duet_generate_params, []),
        "duet_generate": (I, [P, ctypes.POINTER(duet_generate_params), PROGRESS_FN, P, E, E]),
        "duet_result_count": (I, [P]),
        "duet_result_width": (I, [P]),
        "duet_result_height": (I, [P]),
        "duet_result_channels": (I, [P]),
        "duet_result_images": (F, [P]),
        "duet_result_png": (I, [P, I, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
                                ctypes.POINTER(ctypes.c_size_t)]),
        "duet_result_parameters": (S, [P, I]),
        "duet_result_seed": (ctypes.c_int64, [P]),
        "duet_result_image_seed": (ctypes.c_int64, [P, I]),
        "duet_result_model_evaluations": (I, [P]),
        "duet_result_refiner_evaluations": (I, [P]),
        "duet_result_timing": (D, [P, I]),
        "duet_result_free": (None, [P]),
        "duet_denoise": (I, [P, F, I, I, I, F, P, I, F, F, F, F, E]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


_lib = None
_lib_path = None
_lib_error = None


def load():
    """The library (loaded once); raises OSError naming every place tried."""
    global _lib, _lib_path, _lib_error
    if _lib is not None:
        return _lib
    tried = []
    for path in library_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        _declare(lib)
        if lib.duet_abi_version() != ABI_VERSION:
            raise OSError(f"{path} has C ABI version {lib.duet_abi_version()}, this duet package "
                          f"needs {ABI_VERSION} (rebuild and reinstall)")
        _lib, _lib_path = lib, path
        return lib
    raise OSError("cannot load libduet.so (build it with scripts/build.sh, or set DUET_LIBRARY):\n  "
                  + "\n  ".join(tried))


def library_path():
    return _lib_path
