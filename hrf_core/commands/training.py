"""Training from the shell (``train``, ``resume``): a progress bar, and Ctrl-C or SIGTERM stopping cooperatively."""

from __future__ import annotations

import threading
from contextlib import contextmanager


def _progress_callback(epochs: int):
    from tqdm import tqdm

    bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)

    def on_epoch(report) -> None:
        m = report.metrics
        line = f"epoch {report.epoch}/{report.epochs}"
        if "reward_mean" in m:
            vendi = "  ".join(f"{k} {m[k]:.3f}" for k in sorted(m) if k.startswith("vendi_"))
            line += f"  eval reward {m['reward_mean']:.4f} ± {m['reward_std']:.4f}  {vendi}"
        if "train_reward_mean" in m:
            line += f"  train reward {m['train_reward_mean']:.4f}  kl {m['approx_kl']:.2e}"
        line += f"  {m.get('seconds', 0.0):.1f}s"
        bar.write(line)
        if report.epoch > 0:
            bar.update(1)

    return on_epoch, bar


@contextmanager
def _stop_on_signals(stop_event: threading.Event):
    """While training: SIGINT and SIGTERM ask the trainer to stop cooperatively (the last completed epoch's
    checkpoint is kept); under torchrun every rank gets the signal, and the ranks stop together at their next
    sync point. A second Ctrl-C interrupts at once. The previous handlers come back afterwards."""
    import signal

    def handler(signum, frame):
        if stop_event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop_event.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(launch) -> int:
    """Train a :class:`~hrf_core.rl.launch.Launch` with a progress bar (rank 0); Ctrl-C and SIGTERM stop it
    cooperatively. Exit code 0 when done, 130 when stopped."""
    trainer = launch.trainer
    main = trainer.dist.is_main
    if main:
        on_epoch, bar = _progress_callback(trainer.config.epochs)
        bar.update(trainer.epoch)
        trainer.callbacks.append(on_epoch)
    try:
        with _stop_on_signals(trainer.stop_event):
            state = launch.train()
    except KeyboardInterrupt:
        trainer.stop_event.set()
        return 130
    finally:
        if main:
            bar.close()
    if main:
        print(f"{state}: {trainer.run.path}")
    return 130 if state == "stopped" else 0
