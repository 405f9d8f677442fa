"""duet.Pipeline: a diffusers-style text-to-image pipeline over libduet's C ABI."""
from __future__ import annotations

import ctypes
import io
import math
import numbers
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from . import _capi
from ._errors import Error, check

if TYPE_CHECKING:
    import numpy as np

_F32P = ctypes.POINTER(ctypes.c_float)


def _numpy():
    # numpy is needed for denoise and output_type="np" only: `import duet` works without it
    # (PIL and PNG outputs need no numpy).
    import numpy

    return numpy
_MAX_IMAGES = 64
_OUTPUT_TYPES = ("pil", "np", "png")
_PRECISIONS = ("f32", "fp32", "bf16", "int8")
_BACKENDS = ("cpu", "reference")

# C field names in engine messages -> the Python argument they came from.
_RENAME = (
    ("duet_generate_params: ", ""),
    ("duet_generate_params.num_images", "num_images_per_prompt"),
    ("duet_generate_params.steps", "num_inference_steps"),
    ("duet_generate_params.cfg_scale", "guidance_scale"),
    ("duet_generate_params.", ""),
    ("duet_model_params.", ""),
)


class _Handle:
    """Owns one C handle; frees it when the last Python reference goes away."""

    def __init__(self, ptr, free, keep=None):
        self.ptr = ptr
        self._free = free
        self._keep = keep  # what must outlive this handle (a prompt's model)

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr:
            try:
                self._free(ptr)
            except Exception:  # noqa: BLE001 — interpreter shutdown: ctypes may be gone already
                pass


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _c_text(value, name):
    if "\0" in value:
        raise ValueError(f"{name} contains a NUL character")
    return value.encode("utf-8")


@dataclass
class PipelineOutput:
    """What a pipeline call returns.

    images: PIL images (output_type="pil", each with .info["parameters"]), a float32 array
    [N, H, W, C] in [0, 1] ("np"), or PNG files as bytes ("png").
    seeds: the seed of each image (one draw for the batch, so all equal).
    parameters: each image's PNG `parameters` text (stable-diffusion-webui infotext).
    timings: seconds per stage (encode, prepare, denoise, finish, total)."""

    images: object
    seeds: list
    parameters: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


class DenoiseOutput(NamedTuple):
    """One model evaluation: eps_s (backbone), eps_d (HP of the refiner), eps (fused), all
    [B, C, H, W] float32; alpha [B] (the gate). Without refine eps_d and alpha are zeros."""

    eps_s: np.ndarray
    eps_d: np.ndarray
    alpha: np.ndarray
    eps: np.ndarray


class PromptEncoding:
    """A text encoded once (text encoder, per-block K/V, semantic gates) by Pipeline.encode_prompt;
    pass it as `prompt` / `negative_prompt` to any number of calls of the same pipeline."""

    def __init__(self, handle: _Handle, model: _Handle, text: str):
        self._handle = handle
        self._model = model
        self.text = text

    def __repr__(self):
        return f"PromptEncoding({self.text!r})"


class Pipeline:
    """A loaded duet model. Create with Pipeline.from_pretrained(path).

    A Pipeline may be called from several Python threads at once (the engine gives each call
    its own context); each call releases the GIL while the engine runs."""

    def __init__(self, model: _Handle, path: str):
        self._model = model
        self.path = path
        self._progress = {}
        lib = _capi.load()
        p = model.ptr
        self.name = lib.duet_model_name(p).decode()
        self.precision = lib.duet_model_precision(p).decode()
        self.channels = lib.duet_model_channels(p)
        self.height = lib.duet_model_height(p)
        self.width = lib.duet_model_width(p)
        self.default_guidance_scale = float(lib.duet_model_default_cfg_scale(p))
        self.default_refine_every = lib.duet_model_default_refine_every(p)
        self.num_parameters = int(lib.duet_model_parameters(p))

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path, precision="f32", threads=None, backend="cpu"):
        """Loads PATH/config.json + PATH/model.safetensors.

        precision: "f32" | "bf16" | "int8", or None for the checkpoint's own (a `duet quantize`
        output), else f32. threads: compute threads per call (None = the cores other processes
        leave idle, measured once per process as the CLI does). backend: "cpu" | "reference" (the slow twin). Raises ValueError for a bad
        argument and duet.Error (naming the file and field) when the model cannot be loaded."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        path = os.fspath(path)
        if precision is not None and precision not in _PRECISIONS:
            raise ValueError(f"precision must be 'f32', 'bf16', 'int8' or None, got {precision!r}")
        if threads is not None and (not _is_int(threads) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be 'cpu' or 'reference', got {backend!r}")
        try:
            lib = _capi.load()
        except OSError as e:
            raise Error(str(e), "not found") from None
        params = lib.duet_model_params_default()
        params.threads = threads or 0
        params.precision = _c_text(precision, "precision") if precision is not None else None
        params.backend = _c_text(backend, "backend")
        ptr, err = ctypes.c_void_p(), ctypes.c_void_p()
        st = lib.duet_model_load(_c_text(path, "path"), ctypes.byref(params), ctypes.byref(ptr),
                                 ctypes.byref(err))
        # The arguments are checked above: whatever fails now is the model's files.
        check(st, err, invalid=None)
        return cls(_Handle(ptr.value, lib.duet_model_free), path)

    def close(self):
        """Drops this pipeline's reference to the model (freed once its prompts are gone too)."""
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._model is None:
            raise ValueError("this Pipeline was closed")
        return self._model

    def __repr__(self):
        return (f"Pipeline({self.path!r}, name={self.name!r}, precision={self.precision!r}, "
                f"size={self.width}x{self.height}x{self.channels})")

    # ---- prompts ---------------------------------------------------------------------------------

    def encode_prompt(self, text: str) -> PromptEncoding:
        """Encodes `text` once for reuse as `prompt` / `negative_prompt` / `denoise(prompt=)`."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        model = self._handle()
        lib = _capi.load()
        ptr, err = ctypes.c_void_p(), ctypes.c_void_p()
        st = lib.duet_prompt_encode(model.ptr, _c_text(text, "text"), ctypes.byref(ptr),
                                    ctypes.byref(err))
        check(st, err)
        return PromptEncoding(_Handle(ptr.value, lib.duet_prompt_free, keep=model), model, text)

    def _own_encoding(self, enc, name):
        if enc._model is not self._model:
            raise ValueError(f"{name} was encoded by another Pipeline")
        return enc._handle.ptr

    # ---- generation ------------------------------------------------------------------------------

    def set_progress_bar_config(self, **kwargs):
        """tqdm options for the progress bar (disable=True turns it off), as in diffusers."""
        self._progress = dict(kwargs)

    def __call__(self, prompt, negative_prompt=None, num_inference_steps=20, guidance_scale=None,
                 num_images_per_prompt=1, seed=None, sampler="dpmpp_2m", karras=False,
                 refine_every=None, height=None, width=None, output_type="pil",
                 callback_on_step_end=None, cache=None) -> PipelineOutput:
        """Generates images; the same settings and seed give the bytes `duet generate` writes.

        prompt: a str, a list of str (num_images_per_prompt images each) or a PromptEncoding.
        negative_prompt: the unconditional text of classifier-free guidance (str, PromptEncoding
        or None for the empty text). guidance_scale: None = the model's default; 1 = none.
        seed: None = random (reported in out.seeds). refine_every: run the detail refiner on
        model call i when (i + 1) % K == 0 (0 = never, None = the model's config).
        height / width: None = the model's. output_type: "pil" | "np" | "png".
        callback_on_step_end(pipe, step, num_steps) runs after every model call; returning True
        cancels (duet.CancelledError). Ctrl-C (KeyboardInterrupt) cancels a running call too.
        cache: None / "off", "on", "step:T[,S,E]" or "block:F,B,T[,S,E]" (the backbone cache of
        `duet generate --cache`, docs/caching.md).
        Bad arguments raise ValueError naming the argument."""
        model = self._handle()
        lib = _capi.load()
        gp = lib.duet_generate_params_default()
        keep = []  # C strings / arrays that must live through the call
        # -- prompt --
        if not _is_int(num_images_per_prompt) or not 1 <= num_images_per_prompt <= _MAX_IMAGES:
            raise ValueError(f"num_images_per_prompt must be an int in [1, {_MAX_IMAGES}], got "
                             f"{num_images_per_prompt!r}")
        m = num_images_per_prompt
        if isinstance(prompt, PromptEncoding):
            gp.prompt_encoding = self._own_encoding(prompt, "prompt")
            gp.num_images = m
        elif isinstance(prompt, str):
            gp.prompt = _c_text(prompt, "prompt")
            gp.num_images = m
        elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
            n = len(prompt) * m
            if n > _MAX_IMAGES:
                raise ValueError(f"prompt: {len(prompt)} prompts x num_images_per_prompt {m} = {n} "
                                 f"images, more than {_MAX_IMAGES} in one call")
            texts = (ctypes.c_char_p * n)(*[_c_text(p, "prompt") for p in prompt for _ in range(m)])
            keep.append(texts)
            gp.prompts = texts
            gp.num_images = n
        else:
            raise ValueError("prompt must be a str, a non-empty list of str or a PromptEncoding, got "
                             f"{type(prompt).__name__}")
        if isinstance(negative_prompt, PromptEncoding):
            gp.negative_encoding = self._own_encoding(negative_prompt, "negative_prompt")
        elif isinstance(negative_prompt, str):
            gp.negative_prompt = _c_text(negative_prompt, "negative_prompt")
        elif negative_prompt is not None:
            raise ValueError("negative_prompt must be a str, a PromptEncoding or None, got "
                             f"{type(negative_prompt).__name__}")
        # -- numbers --
        if not _is_int(num_inference_steps) or not 1 <= num_inference_steps <= 1000:
            raise ValueError("num_inference_steps must be an int in [1, 1000], got "
                             f"{num_inference_steps!r}")
        gp.steps = num_inference_steps
        if guidance_scale is not None:
            if (not isinstance(guidance_scale, numbers.Real) or isinstance(guidance_scale, bool)
                    or not math.isfinite(guidance_scale) or not 0 <= guidance_scale <= 100):
                raise ValueError(f"guidance_scale must be a number in [0, 100] or None, got "
                                 f"{guidance_scale!r}")
            gp.cfg_scale = float(guidance_scale)
        if seed is not None:
            if not _is_int(seed) or not 0 <= seed < 2**63:
                raise ValueError(f"seed must be an int in [0, 2**63) or None, got {seed!r}")
            gp.seed = int(seed)
        if not isinstance(sampler, str) or sampler not in _sampler_names():
            raise ValueError(f"sampler must be one of {', '.join(_sampler_names())}, got {sampler!r}")
        gp.sampler = sampler.encode()
        if not isinstance(karras, bool):
            raise ValueError(f"karras must be a bool, got {karras!r}")
        if karras and sampler in ("ddim", "ddpm"):
            raise ValueError(f"karras: Karras sigmas do not apply to the {sampler} sampler")
        gp.karras = int(karras)
        if refine_every is None:
            gp.refine_every = -1
        elif _is_int(refine_every) and refine_every >= 0:
            gp.refine_every = refine_every
        else:
            raise ValueError(f"refine_every must be an int >= 0 or None, got {refine_every!r}")
        for name, v in (("height", height), ("width", width)):
            if v is not None and (not _is_int(v) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        gp.height = height or 0
        gp.width = width or 0
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(_OUTPUT_TYPES)}, got "
                             f"{output_type!r}")
        if cache is not None:
            if not isinstance(cache, str):
                raise ValueError(f"cache must be a str or None, got {cache!r}")
            gp.cache = _c_text(cache, "cache")
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise ValueError("callback_on_step_end must be callable or None")
        res = self._run(lib, model, gp, callback_on_step_end)
        try:
            return _output(lib, res.ptr, output_type)
        finally:
            del res

    def _run(self, lib, model, gp, callback):
        state = {"error": None, "interrupted": False, "cancel": False}
        bar = _progress_bar(self._progress, gp.steps)

        def on_step(step, steps, _user):
            try:
                if bar is not None:
                    if bar.total != steps:
                        bar.total = steps
                    bar.update(step - bar.n)
                if callback is not None and callback(self, step, steps) is True:
                    state["cancel"] = True
            except BaseException as e:  # noqa: BLE001 — re-raised after the C call returns
                state["error"] = e
            return int(state["cancel"] or state["interrupted"] or state["error"] is not None)

        c_step = _capi.PROGRESS_FN(on_step)
        old_handler = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:  # Ctrl-C: stop at the next step instead of unwinding through C
            def on_sigint(signum, frame):
                state["interrupted"] = True
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        ptr, err = ctypes.c_void_p(), ctypes.c_void_p()
        try:
            st = lib.duet_generate(model.ptr, ctypes.byref(gp), c_step, None, ctypes.byref(ptr),
                                   ctypes.byref(err))
        finally:
            if in_main:
                signal.signal(signal.SIGINT, old_handler)
            if bar is not None:
                bar.close()
        res = _Handle(ptr.value, lib.duet_result_free)
        if state["interrupted"]:
            if err:
                lib.duet_error_free(err)
            raise KeyboardInterrupt
        if state["error"] is not None:
            if err:
                lib.duet_error_free(err)
            raise state["error"]
        check(st, err, rename=_RENAME)
        return res

    # ---- one model evaluation --------------------------------------------------------------------

    def denoise(self, x, t, prompt, refine=True) -> DenoiseOutput:
        """One model evaluation (the Python `duet forward`): x [B, C, H, W] float array, t a
        timestep (broadcast) or [B] timesteps, prompt a str or PromptEncoding (every row).
        Returns DenoiseOutput(eps_s, eps_d, alpha, eps) as numpy float32 arrays."""
        model = self._handle()
        lib = _capi.load()
        np = _numpy()
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.channels or x.dtype.kind != "f":
            raise ValueError(f"x must be a float array [B, {self.channels}, H, W], got "
                             f"{x.dtype} {list(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)  # no copy when it already is
        B, C, H, W = x.shape
        if isinstance(t, numbers.Real) and not isinstance(t, bool):
            tt = np.full((B,), t, dtype=np.float32)
        else:
            tt = np.ascontiguousarray(np.asarray(t, dtype=np.float32))
            if tt.shape != (B,):
                raise ValueError(f"t must be a number or an array of shape [{B}], got "
                                 f"{list(tt.shape)}")
        if not np.all(np.isfinite(tt)):
            raise ValueError("t must be finite")
        if isinstance(prompt, str):
            prompt = self.encode_prompt(prompt)
        elif not isinstance(prompt, PromptEncoding):
            raise ValueError(f"prompt must be a str or a PromptEncoding, got {type(prompt).__name__}")
        p = self._own_encoding(prompt, "prompt")
        if not isinstance(refine, bool):
            raise ValueError(f"refine must be a bool, got {refine!r}")
        out = [np.empty_like(x), np.empty_like(x), np.empty((B,), np.float32), np.empty_like(x)]
        ptrs = [a.ctypes.data_as(_F32P) for a in out]
        err = ctypes.c_void_p()
        st = lib.duet_denoise(model.ptr, x.ctypes.data_as(_F32P), B, H, W, tt.ctypes.data_as(_F32P),
                              p, int(refine), ptrs[0], ptrs[1], ptrs[2], ptrs[3], ctypes.byref(err))
        check(st, err, rename=(("height", "x height"), ("width", "x width")))
        return DenoiseOutput(*out)


def _sampler_names():
    lib = _capi.load()
    return [lib.duet_sampler_name(i).decode() for i in range(lib.duet_sampler_count())]


def _progress_bar(config, steps):
    if config.get("disable", False):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, **{k: v for k, v in config.items() if k != "disable"})


def _output(lib, res, output_type):
    n = lib.duet_result_count(res)
    pngs = []
    for i in range(n):
        data, size = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t()
        if lib.duet_result_png(res, i, ctypes.byref(data), ctypes.byref(size)) != _capi.OK:
            raise Error(f"no PNG for image {i}")
        pngs.append(ctypes.string_at(data, size.value))
    params = [lib.duet_result_parameters(res, i).decode("utf-8", "replace") for i in range(n)]
    seeds = [int(lib.duet_result_image_seed(res, i)) for i in range(n)]
    timings = {name: float(lib.duet_result_timing(res, k)) for k, name in enumerate(_capi.TIMINGS)}
    if output_type == "png":
        images = pngs
    elif output_type == "np":
        np = _numpy()
        C, H, W = lib.duet_result_channels(res), lib.duet_result_height(res), lib.duet_result_width(res)
        # A view of the engine's [N, C, H, W] buffer in [-1, 1], mapped to [N, H, W, C] in [0, 1]
        # in one pass (no intermediate copy).
        src = np.ctypeslib.as_array(lib.duet_result_images(res), shape=(n, C, H, W))
        images = np.empty((n, H, W, C), np.float32)
        np.add(src.transpose(0, 2, 3, 1), 1.0, out=images)
        images *= 0.5
    else:
        from PIL import Image

        images = []
        for png in pngs:
            im = Image.open(io.BytesIO(png))
            im.load()  # .info["parameters"] holds the PNG text chunk
            images.append(im)
    return PipelineOutput(images=images, seeds=seeds, parameters=params, timings=timings)
