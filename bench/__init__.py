"""Throughput benchmarks: a raw aiokafka floor, a hand-written reference loop and the
services' hot paths on the real broker and databases (`python -m bench run`)."""
