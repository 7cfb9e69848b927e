"""Tests of the evaluation suite (mirrors eval/)."""
