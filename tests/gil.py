"""Whether native code releases the GIL: the main thread must run while it works."""
import sys
import threading
import time


def main_thread_ran_during(work) -> bool:
    """Run ``work()`` on a thread while the main thread counts clock ticks; True if some tick
    falls well inside the call (10 % margins), which it cannot while the call holds the GIL."""
    interval = {}

    def timed():
        interval["start"] = time.perf_counter()
        work()
        interval["end"] = time.perf_counter()

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        ticks = []
        worker = threading.Thread(target=timed)
        worker.start()
        while worker.is_alive():
            ticks.append(time.perf_counter())
        worker.join()
    finally:
        sys.setswitchinterval(old)
    margin = (interval["end"] - interval["start"]) * 0.1
    return any(interval["start"] + margin < t < interval["end"] - margin for t in ticks)
