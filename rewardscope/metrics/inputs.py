"""Turning what a trainer passes into numbers, or a StepInputError that says why not.

Trainers pass Python lists, numpy arrays of any dtype, and torch tensors (on any
device, in bfloat16, carrying gradients). Everything numeric is accepted and
converted to float64; what only looks numeric is refused with a StepInputError
(reason ``not_numeric``) instead of crashing deep inside or being silently changed:
strings (numpy would parse "1.5"), complex numbers (the imaginary part would be
dropped), datetimes, booleans passed as a scalar, objects.

torch is never imported here: a tensor is recognised by its ``detach`` method.

Usage::

    from rewardscope.metrics.inputs import as_float_array, as_float
    as_float_array("rewards", [1, 2.5])        # array([1. , 2.5])
    as_float("kl", np.float32(0.25))           # 0.25
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .step import StepInputError

# numpy dtype kinds that hold real numbers: bool, signed and unsigned integers, floats.
_REAL_KINDS = frozenset("biuf")
MAX_STEP = 2 ** 53  # steps are stored in float64 rows: beyond this they would no longer be exact


def _from_tensor(name: str, value: Any) -> np.ndarray:
    """A torch tensor as a float64 numpy array: detached, on the CPU, bfloat16 and integers widened."""
    try:
        tensor = value.detach()
        if tensor.is_complex():
            raise StepInputError("not_numeric", f"{name} is a complex tensor; rewards and scalars must be real")
        return np.asarray(tensor.to("cpu").double().numpy())
    except StepInputError:
        raise
    except Exception as error:
        raise StepInputError("not_numeric", f"{name}: cannot read the tensor ({type(error).__name__}: {error})") from None


def as_float_array(name: str, value: Any) -> np.ndarray:
    """A 1-D float64 array of the values, or StepInputError."""
    if hasattr(value, "detach") and hasattr(value, "dtype"):
        array = _from_tensor(name, value)
    elif isinstance(value, (str, bytes)):
        raise StepInputError("not_numeric", f"{name} must be an array of numbers, got a string")
    else:
        try:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (TypeError, ValueError) as error:
            raise StepInputError("not_numeric", f"{name} must be an array of numbers: {error}") from None
    if array.dtype.kind not in _REAL_KINDS:
        if array.dtype.kind != "O":
            raise StepInputError("not_numeric", f"{name} must hold real numbers, got dtype {array.dtype}")
        array = _object_array_as_float(name, array)
    if array.ndim != 1:
        raise StepInputError("not_numeric", f"{name} must be a 1-D array, got shape {array.shape}")
    return array if array.dtype == np.float64 else array.astype(np.float64)


def _object_array_as_float(name: str, array: np.ndarray) -> np.ndarray:
    """An object array (mixed Python numbers, None) when every element is a real number or None."""
    flat = array.ravel().tolist()
    if not all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) or _is_real_scalar(v) for v in flat):
        kinds = sorted({type(v).__name__ for v in flat})
        raise StepInputError("not_numeric", f"{name} must hold real numbers, got {', '.join(kinds)}")
    return np.array([np.nan if v is None else float(v) for v in flat], dtype=np.float64).reshape(array.shape)


def _is_real_scalar(value: Any) -> bool:
    return isinstance(value, np.generic) and value.dtype.kind in _REAL_KINDS


def as_float(name: str, value: Any) -> float:
    """A real scalar (Python or numpy number, 0-d or 1-element tensor/array) as float, or StepInputError."""
    if isinstance(value, (bool, str, bytes)):
        raise StepInputError("not_numeric", f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.generic) or (hasattr(value, "detach") and hasattr(value, "dtype")) or isinstance(value, np.ndarray):
        array = _from_tensor(name, value) if hasattr(value, "detach") else np.asarray(value)
        if array.size == 1 and array.dtype.kind in "iuf":
            return float(array.reshape(()))
    raise StepInputError("not_numeric", f"{name} must be a real number, got {type(value).__name__}: {value!r}")


def as_step(step: Any) -> int:
    """A training step: an integer from 0 to 2**53, or StepInputError."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise StepInputError("not_numeric", f"step must be an integer, got {type(step).__name__}: {step!r}")
    step = int(step)
    if not 0 <= step <= MAX_STEP:
        raise StepInputError("not_numeric", f"step must be between 0 and 2**53, got {step}")
    return step


def as_texts(name: str, value: Any, n_samples: int) -> list[str] | None:
    """Prompts or completions: None, or one string per sample."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise StepInputError("not_numeric", f"{name} must be a sequence of strings, one per completion")
    texts = list(value)
    if len(texts) != n_samples:
        raise StepInputError("length_mismatch", f"{name} has {len(texts)} entries but the batch has {n_samples} completions")
    if not all(isinstance(t, str) for t in texts):
        raise StepInputError("not_numeric", f"{name} must hold strings")
    return texts
