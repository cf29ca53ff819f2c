"""A tiny worker dyno: does a unit of work every few seconds until SIGTERM."""
import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: (print("worker stopping", flush=True), sys.exit(0)))
n = 0
while True:
    n += 1
    print("%s: job %d done" % (os.environ.get("DYNO"), n), flush=True)
    time.sleep(5)
