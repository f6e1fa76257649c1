"""The canary: baseline and candidate served side by side, same traffic, judged against SLOs.

``collect`` measures (local source), ``judge`` decides from the stored raw samples.
"""
