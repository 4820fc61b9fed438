#!/usr/bin/env python3
# Placeholder: being written.
print("1..0 # SKIP not written yet")
