"""Several processes, one monitor: gather every rank's shard of a step to rank 0.

Under ``torch.distributed`` every rank builds the same RewardMonitor and calls
``record_step`` with its own shard of the step. The monitor hands the shard to a
ShardGatherer, which sends it to rank 0 of the process group; rank 0 records the
*global batch*, the concatenation of the shards in rank order, exactly as one
process fed that batch would: every statistic is computed from the same values.
The other ranks keep no sinks, no server and no store; ``gather`` returns None there.

The transport is torch.distributed point to point, on a dedicated gloo group
created for the monitor (so it runs on CPU tensors whatever the training backend,
and has its own timeout): each rank sends rank 0 one flat float64 message, a
fixed-size header (step, sample count, a validity code, its scalars, its timing)
followed by its shard when the shard is valid and not empty. Messages are padded to
a capacity that the sender and rank 0 both derive from that rank's previous
messages (the next power of two above the largest so far), so rank 0 knows each
size in advance; a message above the capacity sends its tail in a second message,
whose size the header tells. Rank 0 posts one receive per rank and waits on them in
rank order, so a rank that never sends is named in the error (RankTimeoutError) once
the timeout has passed. Gloo's all_gather is a ring and costs several times more
than this star on a few CPU ranks (bench/bench_gather.py).

Contract on groups: the global batch is in group order, each prompt's G
completions contiguous. By default every shard must hold whole groups (a shard
of 5 with G = 4 skips the step as ``group_split``, counted); an integration whose
trainer splits groups over processes in order (TRL) sets ``groups_span_ranks``.

Scalars combine across ranks as follows (None on a rank: that rank is left out;
a non-finite value on any rank: the combined value is NaN, which the monitor drops
and logs as it does on one process):

- kl, policy_entropy, clip_ratio: mean weighted by each rank's sample count;
- loss, eval_accuracy: plain mean over ranks (DDP averages gradients with equal
  weight per rank, so the mean of the local losses is the loss it optimises);
- grad_norm, learning_rate: the lowest rank's value (identical on every rank after
  DDP's all-reduce);
- tokens: sum; max_completion_length: largest; group_size: must agree.

RewardMonitor does all this itself; the pieces, inside a process started by torchrun::

    import numpy as np, torch.distributed as dist
    from rewardscope.distributed import LocalShard, ShardGatherer

    dist.init_process_group("gloo")
    gatherer = ShardGatherer(n_functions=1, timeout=60.0)
    shard = LocalShard.build(step=1, rewards=np.ones((1, 4)), group_size=4)
    batch = gatherer.gather(shard)   # a GlobalBatch on rank 0, None elsewhere
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

log = logging.getLogger("rewardscope")

# Skip reasons a rank can report in its header; index 0 means "valid". The monitor counts them
# in grpo_skipped_steps_total{reason}.
REASONS = ("", "step_not_increasing", "empty_batch", "length_mismatch", "group_size_mismatch", "unknown_function",
           "missing_function", "not_numeric", "group_split", "rank_mismatch")

# Scalars carried in the header, and how rank 0 combines them (see the module docstring).
WEIGHTED_MEAN = ("kl", "policy_entropy", "clip_ratio")
PLAIN_MEAN = ("loss", "eval_accuracy")
FIRST_RANK = ("grad_norm", "learning_rate")
SCALARS = WEIGHTED_MEAN + PLAIN_MEAN + FIRST_RANK + ("tokens", "max_completion_length")

# Header layout: fixed fields, then one value and one presence flag per scalar.
STEP, SAMPLES, REASON, HAS_ADVANTAGES, HAS_LENGTHS, GROUP_SIZE, WORK_SECONDS, WALL_TIME = range(8)
_FIXED = 8
HEADER_WIDTH = _FIXED + 2 * len(SCALARS)
_HEADER_TAG, _DATA_TAG = 7301, 7302
_FIRST_CAPACITY = 1024  # float64 values of a rank's first message (the header and up to ~150 completions at F = 4)

DEFAULT_TIMEOUT_SECONDS = 600.0


class RankTimeoutError(RuntimeError):
    """A rank did not take part in the monitor's gather of a step within the timeout."""

    def __init__(self, step: int, missing: list[int], timeout: float, cause: BaseException | None = None) -> None:
        ranks = ", ".join(str(r) for r in missing)
        if missing == [0]:
            what = (f"rewardscope: rank 0, the writer, did not take this rank's shard of step {step} within {timeout:g} s "
                    "(it stopped, or another rank is missing: rank 0's error names it)")
        else:
            what = (f"rewardscope: rank {ranks} did not call record_step for step {step} within {timeout:g} s "
                    "(the run store holds every step recorded before it)")
        super().__init__(what + ("" if cause is None else f"; {str(cause).strip().splitlines()[0]}"))
        self.step = step
        self.missing = missing


def distributed_world() -> tuple[int, int] | None:
    """(rank, world size) when torch.distributed is initialised with several processes, else None.

    Does not import torch: a process that never imported it cannot have initialised it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return (dist.get_rank(), world) if world > 1 else None


@dataclass
class LocalShard:
    """One rank's part of a step, validated locally; ``reason`` is empty when the shard is usable."""

    step: int
    rewards: np.ndarray  # (F, n)
    group_size: int
    advantages: np.ndarray | None = None
    lengths: np.ndarray | None = None
    scalars: dict[str, float | None] = field(default_factory=dict)
    reason: str = ""
    message: str = ""

    @classmethod
    def build(cls, step: int, rewards: np.ndarray, group_size: int, advantages: Any = None, lengths: Any = None,
              **scalars: Any) -> LocalShard:
        """A shard from already validated rewards; checks the arrays' lengths and the scalars' types."""
        shard = cls(step, rewards, group_size, scalars={name: scalars.get(name) for name in SCALARS})
        n = rewards.shape[1]
        try:
            shard.advantages = None if advantages is None else _vector("advantages", advantages, n)
            shard.lengths = None if lengths is None else _vector("completion_lengths", lengths, n)
            for name, value in shard.scalars.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                    raise _Invalid("not_numeric", f"{name} must be a number, got {type(value).__name__}: {value!r}")
        except _Invalid as error:
            return cls.invalid(step, rewards.shape[0], error.reason, str(error))
        return shard

    @classmethod
    def invalid(cls, step: Any, n_functions: int, reason: str, message: str) -> LocalShard:
        """A placeholder for a shard that cannot be used: the rank still takes part in the gather."""
        step = step if isinstance(step, numbers.Integral) and not isinstance(step, bool) else -1
        return cls(int(step), np.empty((n_functions, 0)), 1, reason=reason if reason in REASONS else "not_numeric",
                   message=message)


class _Invalid(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _vector(name: str, values: Any, n: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise _Invalid("not_numeric", f"{name} must be an array of numbers") from None
    if array.size != n:
        raise _Invalid("length_mismatch", f"{name} has {array.size} values but the shard has {n} completions")
    return array


@dataclass
class GlobalBatch:
    """The step as rank 0 records it: the shards concatenated in rank order, scalars combined.

    ``skip`` is (reason, message) when the step cannot be recorded; the per-rank arrays
    (samples, work seconds, wall time at the gather) feed the rank-labelled metrics.
    """

    step: int
    rewards: np.ndarray  # (F, N)
    group_size: int
    advantages: np.ndarray | None
    lengths: np.ndarray | None
    scalars: dict[str, float | None]
    rank_samples: np.ndarray
    rank_work_seconds: np.ndarray
    rank_wall_time: np.ndarray
    skip: tuple[str, str] | None = None

    def record_step_inputs(self) -> dict[str, Any]:
        """Keyword arguments of RewardMonitor.record_step besides the step and the rewards."""
        inputs: dict[str, Any] = {name: self.scalars.get(name) for name in SCALARS}
        tokens = inputs.get("tokens")
        inputs["tokens"] = None if tokens is None else (int(tokens) if math.isfinite(tokens) else tokens)
        mcl = inputs.get("max_completion_length")
        inputs["max_completion_length"] = None if mcl is None or not math.isfinite(mcl) else int(mcl)
        return {**inputs, "group_size": self.group_size, "advantages": self.advantages, "completion_lengths": self.lengths}


class ShardGatherer:
    """Gathers each step's shards to rank 0 of ``group`` (default: a dedicated gloo group over every rank).

    Building it is collective: every rank of the world must build it, in the same order
    relative to other group creations, because it creates a process group.
    """

    def __init__(self, n_functions: int, group: Any = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 groups_span_ranks: bool = False) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self._dist = torch, dist
        self.n_functions = n_functions
        self.timeout = float(timeout)
        self.groups_span_ranks = groups_span_ranks
        if group is None:
            try:
                group = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.timeout))
            except RuntimeError as error:  # torch's DistStoreError: some rank never created the group
                raise RuntimeError(
                    f"rewardscope: under torch.distributed every rank must build the RewardMonitor (the ranks gather their "
                    f"shards to rank 0), but not every rank did within {self.timeout:g} s. Build it on every rank, or pass "
                    f"distributed=False to a monitor that records data you gathered yourself ({error})") from error
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        uses_cuda = dist.get_backend(group) == "nccl"
        self._device = torch.device("cuda", torch.cuda.current_device()) if uses_cuda else torch.device("cpu")
        self._last_exit: float | None = None
        # Size of each rank's next message; the sender and rank 0 update it the same way (see _grow).
        self._capacity = [_FIRST_CAPACITY] * self.world_size

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def gather(self, shard: LocalShard) -> GlobalBatch | None:
        """Take part in this step's gather; the GlobalBatch on rank 0, None on the other ranks."""
        entered = time.monotonic()
        header = self._header(shard, entered)
        try:
            if not self.is_writer:
                self._send(shard, header)
                return None
            headers, parts = self._receive(shard, header)
            return self._combine(headers, parts)
        finally:
            self._last_exit = time.monotonic()

    # ------------------------------------------------------------------ transport
    def _tensor(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(self._device)

    def _header(self, shard: LocalShard, entered: float) -> np.ndarray:
        header = np.full(HEADER_WIDTH, np.nan)
        header[STEP] = shard.step
        header[SAMPLES] = shard.rewards.shape[1]
        header[REASON] = REASONS.index(shard.reason)
        header[HAS_ADVANTAGES] = shard.advantages is not None
        header[HAS_LENGTHS] = shard.lengths is not None
        header[GROUP_SIZE] = shard.group_size
        header[WORK_SECONDS] = math.nan if self._last_exit is None else entered - self._last_exit
        header[WALL_TIME] = time.time()
        for i, name in enumerate(SCALARS):
            value = shard.scalars.get(name)
            header[_FIXED + 2 * i] = math.nan if value is None else float(value)
            header[_FIXED + 2 * i + 1] = value is not None
        return header

    @staticmethod
    def _payload(shard: LocalShard) -> np.ndarray | None:
        """Rewards, then advantages and lengths when present, as one flat array; None when nothing is sent."""
        if shard.reason or shard.rewards.shape[1] == 0:
            return None
        rows = [shard.rewards] + [a[None, :] for a in (shard.advantages, shard.lengths) if a is not None]
        return np.concatenate(rows).reshape(-1)

    def _grow(self, rank: int, size: int) -> None:
        """The capacity rule both ends apply after each message of ``rank``."""
        if size > self._capacity[rank]:
            self._capacity[rank] = 1 << (size - 1).bit_length()

    def _send(self, shard: LocalShard, header: np.ndarray) -> None:
        dist = self._dist
        payload = self._payload(shard)
        size = HEADER_WIDTH + (0 if payload is None else payload.size)
        capacity = self._capacity[self.rank]
        message = np.zeros(max(capacity, size))
        message[:HEADER_WIDTH] = header
        if payload is not None:
            message[HEADER_WIDTH:size] = payload
        try:
            dist.send(self._tensor(message[:capacity]), group=self.group, group_dst=0, tag=_HEADER_TAG)
            if size > capacity:
                dist.send(self._tensor(message[capacity:]), group=self.group, group_dst=0, tag=_DATA_TAG)
        except RuntimeError as error:
            raise RankTimeoutError(shard.step, [0], self.timeout, error) from error
        self._grow(self.rank, size)

    def _receive(self, shard: LocalShard, header: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
        dist, torch = self._dist, self._torch
        ranks = range(1, self.world_size)
        buffers = {r: torch.empty(self._capacity[r], dtype=torch.float64, device=self._device) for r in ranks}
        self._wait_all(shard.step, {r: dist.irecv(b, group=self.group, group_src=r, tag=_HEADER_TAG) for r, b in buffers.items()})
        messages = {r: b.cpu().numpy() for r, b in buffers.items()}
        sizes = {r: HEADER_WIDTH + self._payload_size(messages[r][:HEADER_WIDTH]) for r in ranks}
        tails = {r: torch.empty(sizes[r] - self._capacity[r], dtype=torch.float64, device=self._device)
                 for r in ranks if sizes[r] > self._capacity[r]}
        self._wait_all(shard.step, {r: dist.irecv(t, group=self.group, group_src=r, tag=_DATA_TAG) for r, t in tails.items()})
        for r, tail in tails.items():
            messages[r] = np.concatenate([messages[r], tail.cpu().numpy()])
        headers = np.stack([header] + [messages[r][:HEADER_WIDTH] for r in ranks])
        parts: list[np.ndarray | None] = [self._payload(shard)]
        parts += [messages[r][HEADER_WIDTH:sizes[r]] if sizes[r] > HEADER_WIDTH else None for r in ranks]
        for r in ranks:
            self._grow(r, sizes[r])
        return headers, parts

    def _payload_size(self, header: np.ndarray) -> int:
        if header[REASON] or not header[SAMPLES]:
            return 0
        return int(header[SAMPLES]) * (self.n_functions + int(header[HAS_ADVANTAGES]) + int(header[HAS_LENGTHS]))

    def _wait_all(self, step: int, works: Mapping[int, Any]) -> None:
        """Wait for each rank's message in rank order; the error names every rank still missing."""
        for rank, work in works.items():
            try:
                work.wait()
            except RuntimeError as error:
                missing = [r for r, w in works.items() if r >= rank and not w.is_completed()] or [rank]
                raise RankTimeoutError(step, missing, self.timeout, error) from error

    # ------------------------------------------------------------------ combination (pure)
    def _combine(self, headers: np.ndarray, parts: list[np.ndarray | None]) -> GlobalBatch:
        return combine_shards(headers, parts, self.n_functions, self.groups_span_ranks)


def combine_shards(headers: np.ndarray, parts: list[np.ndarray | None], n_functions: int,
                   groups_span_ranks: bool = False) -> GlobalBatch:
    """The global batch from every rank's header and payload (pure: no torch, no I/O)."""
    samples = headers[:, SAMPLES].astype(np.int64)
    step = int(headers[0, STEP])
    group_size = int(headers[0, GROUP_SIZE])
    batch = GlobalBatch(step, np.empty((n_functions, 0)), group_size, None, None, {}, samples,
                        headers[:, WORK_SECONDS].copy(), headers[:, WALL_TIME].copy())
    bad = np.flatnonzero(headers[:, REASON])
    if bad.size:
        first = int(bad[0])
        message = f"rank {first}'s shard is invalid (its log says why); ranks with a bad shard: {bad.tolist()}"
        batch.skip = (REASONS[int(headers[first, REASON])], message)
        return batch
    if (headers[:, STEP] != step).any():
        batch.skip = ("rank_mismatch", f"ranks record different steps: {headers[:, STEP].astype(np.int64).tolist()}")
        return batch
    if (headers[:, GROUP_SIZE] != group_size).any():
        batch.skip = ("rank_mismatch", f"ranks pass different group sizes: {headers[:, GROUP_SIZE].astype(np.int64).tolist()}")
        return batch
    if not groups_span_ranks and (samples % group_size).any():
        message = f"shard sizes {samples.tolist()} are not whole groups of {group_size}: every rank must hold whole prompt groups"
        batch.skip = ("group_split", message)
        return batch
    batch.rewards, batch.advantages, batch.lengths = _concatenate(headers, parts, n_functions)
    batch.scalars = _combine_scalars(headers, samples)
    return batch


def _concatenate(headers: np.ndarray, parts: list[np.ndarray | None], n_functions: int
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    rewards, advantages, lengths = [], [], []
    for header, part in zip(headers, parts):
        n = int(header[SAMPLES])
        rows = n_functions + int(header[HAS_ADVANTAGES]) + int(header[HAS_LENGTHS])
        matrix = np.empty((rows, 0)) if part is None else part.reshape(rows, n)
        rewards.append(matrix[:n_functions])
        row = n_functions
        if header[HAS_ADVANTAGES]:
            advantages.append(matrix[row])
            row += 1
        if header[HAS_LENGTHS]:
            lengths.append(matrix[row])
    ranks = len(headers)
    # Advantages or lengths from some ranks only cannot describe the global batch: dropped, with a warning.
    for label, kept in (("advantages", advantages), ("completion lengths", lengths)):
        if kept and len(kept) < ranks:
            log.warning("rewardscope: %s passed by %d of %d ranks only; dropped from this step", label, len(kept), ranks)
    return (np.concatenate(rewards, axis=1),
            np.concatenate(advantages) if len(advantages) == ranks else None,
            np.concatenate(lengths) if len(lengths) == ranks else None)


def _combine_scalars(headers: np.ndarray, samples: np.ndarray) -> dict[str, float | None]:
    combined: dict[str, float | None] = {}
    for i, name in enumerate(SCALARS):
        present = headers[:, _FIXED + 2 * i + 1].astype(bool)
        values = headers[present, _FIXED + 2 * i]
        if not values.size:
            combined[name] = None
        elif not np.isfinite(values).all():
            combined[name] = math.nan
        elif name in WEIGHTED_MEAN:
            weights = samples[present].astype(np.float64)
            combined[name] = float(np.average(values, weights=weights)) if weights.sum() > 0 else float(values.mean())
        elif name in PLAIN_MEAN:
            combined[name] = float(values.mean())
        elif name in FIRST_RANK:
            combined[name] = float(values[0])
        elif name == "tokens":
            combined[name] = float(values.sum())
        else:  # max_completion_length
            combined[name] = float(values.max())
    return combined


class RankSignals:
    """The latest per-rank values of a multi-process run (bounded by the world size), exported by rank 0.

    A prometheus_client collector: the monitor registers it in the registry /metrics serves.
    """

    NAMES = ("grpo_rank_work_seconds", "grpo_rank_samples", "grpo_rank_last_step_timestamp_seconds")

    def __init__(self, run_id: str) -> None:
        import threading

        self.run_id = run_id
        self._lock = threading.Lock()
        self._latest: dict[str, np.ndarray] = {}

    def update(self, batch: GlobalBatch) -> None:
        with self._lock:
            self._latest = {"grpo_rank_work_seconds": batch.rank_work_seconds.copy(),
                            "grpo_rank_samples": batch.rank_samples.astype(np.float64),
                            "grpo_rank_last_step_timestamp_seconds": batch.rank_wall_time.copy()}

    def samples(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """(metric, [(rank, value), ...]) for each per-rank metric that has values; NaN (no previous step) left out."""
        with self._lock:
            latest = dict(self._latest)
        return [(name, [(str(rank), float(v)) for rank, v in enumerate(latest[name]) if math.isfinite(v)])
                for name in self.NAMES if name in latest]

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from .metrics.catalogue import metric

        for name, values in self.samples():
            family = GaugeMetricFamily(name, metric(name).help, labels=("run_id", "rank"))
            for rank, value in values:
                family.add_metric((self.run_id, rank), value)
            yield family
