"""What a person watching a training run sees, and how it is stopped.

`Progress` redraws one status line on a terminal (step, epoch, examples/s,
loss, ETA: from the steps' speed, then from the wall-clock time between
evaluations) or logs one every `log_every` steps; `Throughput` measures
examples per second over the timed steps; `StopSignals` turns SIGINT and
SIGTERM into a request to save and stop after the current step
(`Interrupted`), and a second signal into an immediate stop.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time

from absl import logging


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped training after a checkpoint was saved.

    Attributes:
        signum: The signal received.
        step: The global step saved.
        exit_code: The conventional exit code, 128 + signum.
    """

    def __init__(self, signum: int, step: int, model_dir: str):
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at step {step}; "
            f"checkpoint saved in {model_dir}. Run the same command again to "
            f"resume.")


class Progress:
    """Shows step, epoch, examples/s, loss and ETA while training.

    On a terminal it redraws one progress-bar line (at most ten times a
    second); otherwise it logs a line every `log_every` steps.
    """

    def __init__(self, total_steps: int, steps_per_epoch: int,
                 batch_size: int, log_every: int, stream=None):
        self.total, self.per_epoch = total_steps, steps_per_epoch
        self.batch_size, self.log_every = batch_size, log_every
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw, self._drawn = 0.0, False
        # (time, step) at the end of the first and of the last evaluation.
        self._first_eval = self._last_eval = None

    def evaluated(self, step: int, now: float | None = None) -> None:
        """Marks the end of an evaluation at `step`: from the second on, the
        ETA is the wall-clock time per step between the first and the last
        (training, evaluations, checkpoints and all), not the steps' speed
        alone, which leaves the evaluations out."""
        self._last_eval = (time.monotonic() if now is None else now, step)
        self._first_eval = self._first_eval or self._last_eval

    def seconds_per_step(self) -> float | None:
        """Wall-clock seconds per step over whole evaluation cycles of this
        session, or None before two evaluations."""
        if self._first_eval is None:
            return None
        (t0, s0), (t1, s1) = self._first_eval, self._last_eval
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None

    def line(self, step: int, loss: float | None,
             examples_per_sec: float | None, bar_width: int = 0) -> str:
        """One status line, e.g. "step 600/5400  epoch 2/10  [===   ]
        12,345 ex/s  loss 98.1  ETA 0:00:21"."""
        epochs = math.ceil(self.total / self.per_epoch)
        parts = [f"step {step}/{self.total}",
                 f"epoch {max(1, math.ceil(step / self.per_epoch))}/{epochs}"]
        if bar_width:
            done = int(bar_width * step / max(self.total, 1))
            parts.append("[" + "=" * done + " " * (bar_width - done) + "]")
        if examples_per_sec:
            parts.append(f"{examples_per_sec:,.0f} ex/s")
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        per_step = self.seconds_per_step()
        if per_step is None and examples_per_sec:
            per_step = self.batch_size / examples_per_sec
        if per_step and step < self.total:
            parts.append(f"ETA {_duration((self.total - step) * per_step)}")
        return "  ".join(parts)

    def update(self, step: int, loss: float | None,
               examples_per_sec: float | None) -> None:
        """Reports that `step` steps are done, with the recent mean loss."""
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and step < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self.line(step, loss, examples_per_sec,
                                               bar_width=30) + "\033[K")
            self.stream.flush()
            self._drawn = True
        elif step % self.log_every == 0 or step == self.total:
            logging.info(self.line(step, loss, examples_per_sec))

    def end_line(self) -> None:
        """Ends the progress-bar line before other output."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Throughput:
    """Examples per second over the steps timed (compilation excluded)."""

    def __init__(self):
        self.examples, self.seconds = 0, 0.0
        self._recent = []  # (seconds, examples) of the last steps

    def add(self, seconds: float, examples: int) -> None:
        self.examples += examples
        self.seconds += seconds
        self._recent = (self._recent + [(seconds, examples)])[-50:]

    @property
    def overall(self) -> float | None:
        return self.examples / self.seconds if self.seconds else None

    @property
    def recent(self) -> float | None:
        seconds = sum(s for s, _ in self._recent)
        return sum(e for _, e in self._recent) / seconds if seconds else None


class StopSignals:
    """Records SIGINT/SIGTERM so that the loop can save and stop between
    steps; a second signal stops at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle)
                              for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("Received %s: saving a checkpoint after this step "
                        "(send it again to stop at once).",
                        signal.Signals(signum).name)

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
