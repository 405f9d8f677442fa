# Type stubs of the duet package (docstrings live in the .py modules).
from os import PathLike
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np

__version__: str

class Error(Exception):
    message: str
    code: str
    def __init__(self, message: str, code: str = ...) -> None: ...

class CancelledError(Error): ...

class PromptEncoding:
    text: str

class DenoiseOutput(NamedTuple):
    eps_s: np.ndarray
    eps_d: np.ndarray
    alpha: np.ndarray
    eps: np.ndarray

class PipelineOutput:
    images: Any  # list[PIL.Image.Image] | np.ndarray [N, H, W, C] float32 | list[bytes]
    seeds: list[int]
    parameters: list[str]
    timings: dict[str, float]

StepCallback = Callable[["Pipeline", int, int], Optional[bool]]

class Pipeline:
    path: str
    name: str
    precision: str
    channels: int
    height: int
    width: int
    default_guidance_scale: float
    default_refine_every: int
    num_parameters: int
    @classmethod
    def from_pretrained(
        cls,
        path: Union[str, PathLike[str]],
        precision: Optional[str] = "f32",
        threads: Optional[int] = None,
        backend: str = "cpu",
    ) -> "Pipeline": ...
    def close(self) -> None: ...
    def __enter__(self) -> "Pipeline": ...
    def __exit__(self, *exc: object) -> None: ...
    def encode_prompt(self, text: str) -> PromptEncoding: ...
    def set_progress_bar_config(self, **kwargs: Any) -> None: ...
    def __call__(
        self,
        prompt: Union[str, Sequence[str], PromptEncoding],
        negative_prompt: Union[str, PromptEncoding, None] = None,
        num_inference_steps: int = 20,
        guidance_scale: Optional[float] = None,
        num_images_per_prompt: int = 1,
        seed: Optional[int] = None,
        sampler: str = "dpmpp_2m",
        karras: bool = False,
        refine_every: Optional[int] = 3,
        height: Optional[int] = None,
        width: Optional[int] = None,
        output_type: str = "pil",
        callback_on_step_end: Optional[StepCallback] = None,
        cache: Optional[str] = None,
    ) -> PipelineOutput: ...
    def denoise(
        self,
        x: np.ndarray,
        t: Union[float, np.ndarray, Sequence[float]],
        prompt: Union[str, PromptEncoding],
        refine: bool = True,
    ) -> DenoiseOutput: ...

def samplers() -> list[str]: ...
def info() -> dict[str, Any]: ...
