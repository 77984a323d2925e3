"""How `lls fleet` stops its repositories' processes on Ctrl-C, whichever thread gets it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# One repository's work runs `sleep` in a worker thread; Ctrl-C is delivered to that thread,
# as the kernel may do with a process's signals. Python notes it for the main thread alone.
SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from pathlib import Path
    from lls._runner import Children, Interrupted, each

    children = Children()

    def work(item):
        worker = threading.get_ident()

        def interrupt():  # once `sleep` runs, Ctrl-C to this worker thread
            while not children._running:
                time.sleep(0.01)
            signal.pthread_kill(worker, signal.SIGINT)

        threading.Thread(target=interrupt).start()
        try:
            children.run(["sleep", "600"], cwd=Path("."))
        except Interrupted:
            return "interrupted"
        return "finished"

    results, interrupted = each(children, work, ["one"], 1)
    print(results, interrupted)
    """
)


def test_ctrl_c_received_by_a_worker_thread_stops_the_fleet() -> None:
    """The main thread waited for the work without a timeout, so a Ctrl-C the kernel gave a
    worker thread was never raised: the fleet hung with its processes running."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['interrupted'] True"
